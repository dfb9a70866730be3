import { Command, InvalidArgumentError, Option } from 'commander';
import { Clients, cliCredentials, type GlobalOptions } from './clients';
import { getJobCommand, cancelJobsCommand, listJobsCommand, retryJobCommand } from './commands/jobs';
import { devicesCommand } from './commands/devices';
import { modelsCommand } from './commands/models';
import { submitCommand, type SubmitOptions } from './commands/submit';
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
  .description('queue a job; prints its id at once, then follows it unless --detach')
  .requiredOption('-p, --prompt <text>', 'the prompt')
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
  .option('--init-image <file>', 'img2img / inpaint input image')
  .option('--mask <file>', 'inpaint mask')
  .option('--upscale <model path>', 'txt2img: upscale the result with this model')
  .addOption(new Option('--safety <policy>', 'safety check').choices(['off', 'flag', 'blur', 'block']))
  .addOption(new Option('--priority <level>', 'queue priority').choices(['low', 'normal', 'high']))
  .option('--session <id>', 'session whose defaults apply')
  .option('--key <idempotency key>', 'the same key returns the same job on retry')
  .option('--deadline <seconds>', 'fail the job if not done by then', int)
  .option('-o, --out <dir>', 'copy the images here when done')
  .option('-d, --detach', 'print the id and exit without following the job', false)
  .action(
    action(async (clients, out, signal, o: SubmitOptions & { out?: string; detach: boolean }) => {
      const job = await submitCommand(clients, out, o);
      if (o.detach) {
        out.result({ job }, () => job.id);
        return EXIT.ok;
      }
      return watchCommand(clients, out, [job.id], { outDir: o.out, signal });
    }),
  );

program
  .command('watch')
  .description('follow jobs with a progress bar each until they end')
  .argument('<job...>', 'job ids')
  .option('-o, --out <dir>', 'copy the images here when done')
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
