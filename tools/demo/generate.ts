// A direct demo (no queue): find the trained digits model in the model service, load it
// onto the first device through the model service (→ inference's model host → its worker), then
// stream a txt2img from the inference service and print where the image was written.
//   npx tsx tools/demo/generate.ts [--model digits-sd15.safetensors] [--prompt "a handwritten digit 7"] [--steps 15]
import { call, createClient, stream } from '@dops/grpc-client';
import { deviceV1, inferenceV1, modelV1 } from '@dops/proto';
import { testCredentials } from '@dops/testing';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

async function main(): Promise<void> {
  const devices = createClient(deviceV1.DeviceServiceClient, arg('device-address', '127.0.0.1:50051'), {
    credentials: testCredentials('ops'),
  });
  const models = createClient(modelV1.ModelServiceClient, arg('model-address', '127.0.0.1:50053'), {
    credentials: testCredentials('ops'),
  });
  const inference = createClient(
    inferenceV1.InferenceServiceClient,
    arg('inference-address', '127.0.0.1:50054'),
    { credentials: testCredentials('ops') },
  );
  try {
    const [device] = (await call(devices.listDevices, {})).devices;
    if (!device) throw new Error('the device service lists no device');
    const { model } = await call(models.getModel, { path: arg('model', 'digits-sd15.safetensors') });
    if (!model) throw new Error('model not found');
    process.stdout.write(`model  ${model.relativePath} (${model.type}, ${model.base}) id ${model.id}\n`);
    const loaded = await call(
      models.loadModel,
      { modelId: model.id, deviceId: device.id, tier: modelV1.Tier.VRAM },
      { deadlineMs: 300_000 },
    );
    process.stdout.write(
      `loaded on ${device.id} in ${loaded.event?.timings?.totalSeconds?.toFixed(2) ?? '?'} s\n`,
    );
    const steps = Number(arg('steps', '15'));
    const params = inferenceV1.GenerationParams.fromPartial({
      modelId: model.id,
      mode: inferenceV1.Mode.TXT2IMG,
      prompt: arg('prompt', 'a handwritten digit 7'),
      cfgScale: 7,
      scheduler: 'DPM++ 2M',
      width: 64,
      height: 64,
      steps,
      seed: 42,
    });
    for await (const msg of stream(
      inference.generateStream,
      { params, deviceId: device.id, previewIntervalSeconds: 0 },
      { deadlineMs: 300_000 },
    )) {
      if (msg.progress) process.stdout.write(`\rstep ${msg.progress.step}/${msg.progress.total}`);
      if (msg.result) {
        process.stdout.write('\n');
        for (const image of msg.result.images) {
          const a = image.artifact!;
          process.stdout.write(
            `image  ${a.path}  ${a.width}x${a.height} ${a.format} sha256 ${a.sha256.slice(0, 16)}… seed ${image.seed}\n`,
          );
        }
      }
    }
  } finally {
    devices.close();
    models.close();
    inference.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
