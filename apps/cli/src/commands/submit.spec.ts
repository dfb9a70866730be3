import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Clients } from '../clients';
import { isBatch, parseControlNet, parseLora, parseSeeds, submitRequest } from './submit';

describe('submit options', () => {
  it('parses repeatable --lora path[:weight]', () => {
    const loras = parseLora('b.safetensors', parseLora('dir/a.safetensors:0.5'));
    expect(loras).toEqual([
      { path: 'dir/a.safetensors', weight: 0.5 },
      { path: 'b.safetensors', weight: undefined },
    ]);
    expect(() => parseLora(':0.5')).toThrow(/expected <path>/);
  });

  it('parses repeatable --controlnet model:image[:scale]', () => {
    expect(parseControlNet('cn:edges.png:0.8')).toEqual([{ model: 'cn', image: 'edges.png', scale: 0.8 }]);
    expect(parseControlNet('cn:dir/edges.png')).toEqual([
      { model: 'cn', image: 'dir/edges.png', scale: undefined },
    ]);
    expect(() => parseControlNet('cn')).toThrow(/expected <model>:<image file>/);
  });

  it('parses --seeds and tells a batch from a single job', () => {
    expect(parseSeeds('1, 2,3')).toEqual(['1', '2', '3']);
    expect(() => parseSeeds('1,x')).toThrow(/non-negative integers/);
    expect(isBatch({ template: 'txt2img', prompt: 'p' })).toBe(false);
    expect(isBatch({ template: 'txt2img', prompt: 'p', seeds: ['1'] })).toBe(true);
    expect(isBatch({ template: 'txt2img', prompt: 'p', repeat: 3 })).toBe(true);
  });

  it('sends LoRAs in params and ControlNet images inline, one per ControlNet', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dops-cli-'));
    writeFileSync(path.join(dir, 'edges.png'), 'edges');
    const req = await submitRequest({} as Clients, {
      template: 'txt2img',
      prompt: 'p',
      lora: [{ path: 'a.safetensors', weight: 0.5 }],
      controlnet: [{ model: 'cn', image: path.join(dir, 'edges.png'), scale: 0.7 }],
    });
    expect(req.spec!.params!.loras).toEqual([{ path: 'a.safetensors', weight: 0.5 }]);
    expect(req.spec!.params!.controlnets).toEqual([{ path: 'cn', image: '', conditioningScale: 0.7 }]);
    expect(req.spec!.controlnetImages.map((i) => Buffer.from(i.data).toString())).toEqual(['edges']);
  });
});
