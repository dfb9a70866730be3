import { Command, InvalidArgumentError, Option } from 'commander';
import { Clients, cliCredentials, type GlobalOptions } from './clients';
import { getJobCommand, cancelJobsCommand, listJobsCommand, retryJobCommand } from './commands/jobs';
import { devicesCommand } from './commands/devices';
import { modelsCommand } from './commands/models';
import { createSessionCommand, sessionActionCommand, type SessionDefaultsOptions } from './commands/sessions';
import {
  isBatch,
  parseControlNet,
  parseLora,
  parseSeeds,
  submitBatchCommand,
  submitCommand,
  type SubmitOptions,
} from './commands/submit';
import { downloadCommand } from './commands/download';
import { call } from '@dops/grpc-client';
import { watchCommand } from './commands/watch';
import { describeError, EXIT, exitCodeOf } from './exit-codes';
import { createOutput, type Output } from './output';

function int(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('not an integer');
  return n;
}

function num(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError('not a number');
  return n;
}

const program = new Command('dops')
  .description('Submit, watch and manage dops image generation jobs')
  .addOption(
    new Option('--processing <address>', 'processing service')
      .env('DOPS_PROCESSING_ADDRESS')
      .default('127.0.0.1:50055'),
  )
  .addOption(
    new Option('--device <address>', 'device service').env('DOPS_DEVICE_ADDRESS').default('127.0.0.1:50051'),
  )
  .addOption(
    new Option('--model-service <address>', 'model service')
      .env('DOPS_MODEL_ADDRESS')
      .default('127.0.0.1:50053'),
  )
  .addOption(
    new Option('--ca <file>', 'CA bundle the services are issued by (default: the development CA)').env(
      'DOPS_CA_FILE',
    ),
  )
  .addOption(
    new Option('--token-file <file>', "bearer token (default: the development client 'demo')").env(
      'DOPS_TOKEN_FILE',
    ),
  )
  .addOption(new Option('--cert <file>', 'mTLS client certificate instead of a token').env('DOPS_CERT_FILE'))
  .addOption(new Option('--key <file>', 'its private key').env('DOPS_KEY_FILE'))
  .option('--json', 'one JSON object per line on stdout, for scripts', false)
  .showHelpAfterError()
  .exitOverride();

/** Runs a command with clients and output, mapping errors to exit codes; Ctrl-C cancels watches. */
function action<A extends unknown[]>(
  run: (clients: Clients, out: Output, signal: AbortSignal, ...args: A) => Promise<number>,
) {
  return async (...args: A) => {
    const g = program.opts<GlobalOptions>();
    const clients = new Clients(
      { processing: g.processing, device: g.device, model: g.modelService },
      cliCredentials(g),
    );
    const out = createOutput(g.json);
    const ac = new AbortController();
    const onSigint = () => ac.abort();
    process.once('SIGINT', onSigint);
    try {
      process.exitCode = await run(clients, out, ac.signal, ...args);
    } catch (err) {
      process.exitCode = ac.signal.aborted ? EXIT.interrupted : exitCodeOf(err);
      process.stderr.write(`${describeError(err)}\n`);
    } finally {
      process.off('SIGINT', onSigint);
      clients.close();
    }
  };
}

program
  .command('submit')
  .description(
    'queue a job (or a batch: --seeds, --repeat); prints its id at once, then follows it unless --detach',
  )
  .option('-p, --prompt <text>', 'the prompt (required)')
  .option('-m, --model <id|path>', "model id, or its path inside the model roots (default: the session's)")
  .addOption(
    new Option('-t, --template <name>', 'workflow template')
      .choices(['txt2img', 'img2img', 'inpaint'])
      .default('txt2img'),
  )
  .option('--negative <text>', 'negative prompt')
  .option('-W, --width <px>', 'width', int)
  .option('-H, --height <px>', 'height', int)
  .option('-s, --steps <n>', 'denoising steps', int)
  .option('--cfg <scale>', 'classifier-free guidance', num)
  .option('--seed <n>', 'seed', int)
  .option('--scheduler <name>', 'Euler, Euler a, DPM++ 2M, DPM++ 2M Karras, DDIM, UniPC, LCM')
  .option('--strength <0..1>', 'img2img / inpaint strength', num)
  .option('-n, --batch-count <n>', 'images in the job', int)
  .option('--seeds <list>', 'one job per seed (comma-separated), submitted as one batch', parseSeeds)
  .option('--repeat <n>', 'each job this many times (seeds count up), submitted as one batch', int)
  .option('--lora <path[:weight]>', 'a LoRA in the model roots, weight 1 unless given; repeatable', parseLora)
  .option(
    '--controlnet <model:image[:scale]>',
    'a ControlNet in the model roots with a local conditioning image, scale 1 unless given; repeatable',
    parseControlNet,
  )
  .option('--init-image <file>', 'img2img / inpaint input image')
  .option('--mask <file>', 'inpaint mask')
  .option('--upscale <model path>', 'txt2img: upscale the result with this model')
  .addOption(new Option('--safety <policy>', 'safety check').choices(['off', 'flag', 'blur', 'block']))
  .addOption(new Option('--priority <level>', 'queue priority').choices(['low', 'normal', 'high']))
  .option('--session <id>', 'session whose defaults apply')
  .option('--key <idempotency key>', 'the same key returns the same job on retry')
  .option('--deadline <seconds>', 'fail the job if not done by then', int)
  .option('-o, --out <dir>', 'download the images here through the API when done (sha256 verified)')
  .option('-d, --detach', 'print the id and exit without following the job', false)
  .addOption(
    new Option(
      '--on-interrupt <what>',
      'Ctrl-C while following: cancel the job(s) it started, or leave them running',
    )
      .choices(['cancel', 'leave'])
      .default('cancel'),
  )
  // Checked after parsing, so that an unknown option is named as such before a missing prompt.
  .hook('preAction', (command) => {
    if (!command.opts<{ prompt?: string }>().prompt)
      command.error("error: required option '-p, --prompt <text>' not specified");
  })
  .action(
    action(
      async (
        clients,
        out,
        signal,
        o: SubmitOptions & { out?: string; detach: boolean; onInterrupt: 'cancel' | 'leave' },
      ) => {
        const jobIds = isBatch(o)
          ? await submitBatchCommand(clients, out, o)
          : [(await submitCommand(clients, out, o)).id];
        if (o.detach) {
          out.result({ jobIds }, () => jobIds.join('\n'));
          return EXIT.ok;
        }
        try {
          return await watchCommand(clients, out, jobIds, { outDir: o.out, signal });
        } catch (err) {
          if (signal.aborted && o.onInterrupt === 'cancel') await cancelStarted(clients, out, jobIds);
          throw err;
        }
      },
    ),
  );

/** Ctrl-C while following jobs this command started: cancel them (a second Ctrl-C exits at once). */
async function cancelStarted(clients: Clients, out: Output, jobIds: string[]): Promise<void> {
  for (const jobId of jobIds) {
    const { job } = await call(clients.processing.cancelJob, { jobId }, { deadlineMs: 10_000 });
    out.note(
      `interrupted: ${jobId} ${job ? job.state.replace('JOB_STATE_', '').toLowerCase() : 'cancelled'}`,
    );
  }
}

program
  .command('watch')
  .description('follow jobs with a progress bar each until they end')
  .argument('<job...>', 'job ids')
  .option('-o, --out <dir>', 'download the images here through the API when done (sha256 verified)')
  .action(
    action((clients, out, signal, jobIds: string[], o: { out?: string }) =>
      watchCommand(clients, out, jobIds, { outDir: o.out, signal }),
    ),
  );

program
  .command('jobs')
  .description('list jobs')
  .addOption(new Option('--state <state>').choices(['queued', 'running', 'succeeded', 'failed', 'cancelled']))
  .option('--session <id>')
  .option('--batch <id>')
  .action(
    action((clients, out, _signal, o: { state?: string; session?: string; batch?: string }) =>
      listJobsCommand(clients, out, o),
    ),
  );

program
  .command('get')
  .argument('<job>', 'job id')
  .description('show one job')
  .action(action((clients, out, _signal, jobId: string) => getJobCommand(clients, out, jobId)));

program
  .command('cancel')
  .argument('<job...>', 'job ids')
  .description('cancel jobs: a queued job never runs, a running one stops within a step')
  .action(action((clients, out, _signal, jobIds: string[]) => cancelJobsCommand(clients, out, jobIds)));

program
  .command('retry')
  .argument('<job>', 'job id')
  .description('queue a failed or cancelled job again')
  .action(action((clients, out, _signal, jobId: string) => retryJobCommand(clients, out, jobId)));

program
  .command('download')
  .argument('<artifact>', 'artifact id (a job image id, `dops get <job> --json`)')
  .requiredOption('-o, --out <file>', 'where to write it (only once its sha256 matches)')
  .description("download one of the caller's images through the API")
  .action(
    action((clients, out, signal, artifactId: string, o: { out: string }) =>
      downloadCommand(clients, out, artifactId, o.out, signal),
    ),
  );

const session = program
  .command('session')
  .description('sessions: jobs that share defaults, paused and cancelled together');
session
  .command('create')
  .description('create a session; prints its id')
  .option('-m, --model <id|path>', 'default model')
  .option('-W, --width <px>', 'default width', int)
  .option('-H, --height <px>', 'default height', int)
  .option('--lora <path[:weight]>', 'default LoRA; repeatable', parseLora)
  .action(
    action((clients, out, _signal, o: SessionDefaultsOptions) => createSessionCommand(clients, out, o)),
  );
for (const verb of ['get', 'pause', 'resume', 'cancel'] as const)
  session
    .command(verb)
    .argument('<session>', 'session id')
    .description(
      {
        get: 'show a session',
        pause: 'hold its queued jobs',
        resume: 'run its held jobs',
        cancel: 'cancel its unfinished jobs; it takes no more',
      }[verb],
    )
    .action(action((clients, out, _signal, id: string) => sessionActionCommand(clients, out, verb, id)));

program
  .command('models')
  .description('list the models the model service found')
  .option('--type <type>', 'checkpoint, lora, controlnet, vae, upscaler, text-embedding')
  .option('--base <base>', 'sd1, sd2, sdxl, sdxl-refiner')
  .action(
    action((clients, out, _signal, o: { type?: string; base?: string }) => modelsCommand(clients, out, o)),
  );

program
  .command('devices')
  .description('list the devices of the node')
  .action(action((clients, out) => devicesCommand(clients, out)));

program.parseAsync(process.argv).catch((err: { exitCode?: number; code?: string }) => {
  // commander's own exits (help, version, usage errors) arrive here through exitOverride.
  process.exitCode =
    err.code === 'commander.helpDisplayed' || err.code === 'commander.help' ? EXIT.ok : EXIT.usage;
});
