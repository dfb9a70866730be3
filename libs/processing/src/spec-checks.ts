import { DopsError } from '@dops/errors';
import type { processingV1 } from '@dops/proto';
import { listNodes, type Redis } from '@dops/queue';
import type { ModelCatalog } from './model-catalog';
import { checkModels } from './model-checks';
import { checkSpec, type CheckedSpec, type TemplateName, type WorkflowLimits } from './workflow';

export interface SpecCheckOptions extends WorkflowLimits {
  prefix: string;
  /** The longest deadline_seconds accepted (longer: INVALID_ARGUMENT). */
  maxDeadlineSeconds: number;
  /** The model registry; unset: only models some inference node announces are accepted, unchecked. */
  catalog?: ModelCatalog;
}

/**
 * Every check of a job at submit, before anything is queued or written: the deadline, the spec's
 * static checks, then the registry's (the models it names exist, have the right type and base,
 * and can be loaded). A model no registry knows is still accepted while an inference node
 * announces it resident.
 */
export class SpecChecks {
  constructor(
    private readonly redis: Redis,
    private readonly options: SpecCheckOptions,
  ) {}

  checkDeadline(deadlineSeconds: number): void {
    if (deadlineSeconds > this.options.maxDeadlineSeconds)
      throw DopsError.invalidArgument(
        'deadline_seconds',
        `must be at most ${this.options.maxDeadlineSeconds} (0 = the service default)`,
      );
  }

  /** The static checks only (for every item of a batch before any registry call). */
  checkStatic(spec: processingV1.JobSpec, template: TemplateName): CheckedSpec {
    return checkSpec(spec, template, this.options);
  }

  /** The registry's checks of a statically checked spec. */
  async checkModels(checked: CheckedSpec): Promise<void> {
    const { catalog } = this.options;
    if (await this.resident(checked.params.modelId)) {
      if (catalog)
        await checkModels(catalog, checked.spec, checked.params, checked.template).catch(this.unlessUnknown);
      return;
    }
    if (!catalog)
      throw new DopsError(
        'NOT_FOUND',
        `spec.params.model_id: model '${checked.params.modelId}' is not loaded on any inference node`,
        {
          violations: [
            {
              field: 'spec.params.model_id',
              description: `model '${checked.params.modelId}' is not loaded on any inference node`,
            },
          ],
        },
      );
    await checkModels(catalog, checked.spec, checked.params, checked.template);
  }

  /** A resident model the registry does not know (an embedder's own id) passes; every other finding stands. */
  private readonly unlessUnknown = (err: unknown): void => {
    if (
      err instanceof DopsError &&
      err.code === 'NOT_FOUND' &&
      err.violations.every((v) => v.field === 'spec.params.model_id')
    )
      return;
    throw err;
  };

  private async resident(modelId: string): Promise<boolean> {
    const nodes = await listNodes(this.redis, this.options.prefix);
    return nodes.some(
      (n) => n.service === 'inference' && n.devices.some((d) => d.residentModels.includes(modelId)),
    );
  }
}
