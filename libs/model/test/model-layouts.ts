import type { TensorSpec } from './safetensors-writer';

/**
 * Tensor layouts of real models, reduced to the keys identification reads plus a few of each
 * component. Shapes of the decisive keys are the real ones (or tiny ones for structure tests);
 * every other tensor is [1] to keep files small.
 */
type Layout = Record<string, TensorSpec>;
const one: TensorSpec = { shape: [1] };

const UNET = 'model.diffusion_model.';

export function originalCheckpoint(options: {
  width: number;
  inChannels?: number;
  encoders: 'sd1' | 'sd2' | 'sdxl' | 'sdxl-refiner' | 'none';
  channels?: number;
}): Layout {
  const c = options.channels ?? 320;
  const layout: Layout = {
    [`${UNET}input_blocks.0.0.weight`]: { shape: [c, options.inChannels ?? 4, 3, 3] },
    [`${UNET}input_blocks.0.0.bias`]: { shape: [c] },
    [`${UNET}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight`]: { shape: [2 * c, options.width] },
    [`${UNET}input_blocks.4.1.proj_in.weight`]: {
      shape: options.encoders === 'sd1' ? [2 * c, 2 * c, 1, 1] : [2 * c, 2 * c],
    },
    [`${UNET}out.2.weight`]: one,
    'first_stage_model.encoder.conv_in.weight': one,
    'first_stage_model.decoder.conv_out.weight': one,
  };
  if (options.encoders === 'sd1')
    layout['cond_stage_model.transformer.text_model.embeddings.token_embedding.weight'] = one;
  if (options.encoders === 'sd2') layout['cond_stage_model.model.token_embedding.weight'] = one;
  if (options.encoders === 'sdxl') {
    layout['conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight'] = one;
    layout['conditioner.embedders.1.model.token_embedding.weight'] = one;
    layout[`${UNET}label_emb.0.0.weight`] = { shape: [4 * c, 2816] };
  }
  if (options.encoders === 'sdxl-refiner') {
    layout['conditioner.embedders.0.model.token_embedding.weight'] = one;
    layout[`${UNET}label_emb.0.0.weight`] = { shape: [4 * c, 2560] };
  }
  return layout;
}

export function kohyaLora(options: {
  te: 'te' | 'te1+te2' | 'none';
  teWidth?: number;
  te2Width?: number;
  unetWidth: number;
  rank?: number;
  sdxlNames?: boolean;
}): Layout {
  const r = options.rank ?? 4;
  const block = options.sdxlNames ? 'input_blocks_4_1' : 'down_blocks_1_attentions_0';
  const layout: Layout = {
    [`lora_unet_${block}_transformer_blocks_0_attn2_to_k.lora_down.weight`]: {
      shape: [r, options.unetWidth],
    },
    [`lora_unet_${block}_transformer_blocks_0_attn2_to_k.lora_up.weight`]: { shape: [640, r] },
    [`lora_unet_${block}_transformer_blocks_0_attn2_to_k.alpha`]: { shape: [] },
  };
  const te = (prefix: string, width: number): void => {
    layout[`${prefix}_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight`] = { shape: [r, width] };
    layout[`${prefix}_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight`] = { shape: [width, r] };
  };
  if (options.te === 'te') te('lora_te', options.teWidth ?? 768);
  if (options.te === 'te1+te2') {
    te('lora_te1', options.teWidth ?? 768);
    te('lora_te2', options.te2Width ?? 1280);
  }
  return layout;
}

export function peftLora(
  unetWidth: number,
  textEncoders: Array<'text_encoder' | 'text_encoder_2'> = [],
): Layout {
  const layout: Layout = {
    'unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight': {
      shape: [4, unetWidth],
    },
    'unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight': { shape: [640, 4] },
  };
  for (const te of textEncoders) {
    layout[`${te}.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight`] = {
      shape: [4, te === 'text_encoder' ? 768 : 1280],
    };
  }
  return layout;
}

export function originalControlNet(width: number, sdxl = false): Layout {
  const layout: Layout = {
    'control_model.input_hint_block.0.weight': { shape: [16, 3, 3, 3] },
    'control_model.zero_convs.0.0.weight': one,
    'control_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight': { shape: [640, width] },
    'control_model.input_blocks.4.1.proj_in.weight': { shape: [640, 640, 1, 1] },
  };
  if (sdxl) layout['control_model.label_emb.0.0.weight'] = { shape: [1280, 2816] };
  return layout;
}

export function diffusersControlNet(width: number, sdxl = false): Layout {
  const layout: Layout = {
    'controlnet_cond_embedding.conv_in.weight': { shape: [16, 3, 3, 3] },
    'controlnet_down_blocks.0.weight': one,
    'down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight': { shape: [640, width] },
    'down_blocks.1.attentions.0.proj_in.weight': { shape: [640, 640] },
  };
  if (sdxl) layout['add_embedding.linear_1.weight'] = { shape: [1280, 2816] };
  return layout;
}

export function vae(): Layout {
  return {
    'encoder.conv_in.weight': { shape: [128, 3, 3, 3] },
    'encoder.down.0.block.0.conv1.weight': one,
    'decoder.conv_in.weight': { shape: [512, 4, 3, 3] },
    'decoder.up.0.block.0.conv1.weight': one,
    'quant_conv.weight': { shape: [8, 8, 1, 1] },
    'post_quant_conv.weight': { shape: [4, 4, 1, 1] },
  };
}

export function esrganNew(inChannels = 3): Layout {
  return {
    'conv_first.weight': { shape: [64, inChannels, 3, 3] },
    'body.0.rdb1.conv1.weight': one,
    'conv_body.weight': one,
    'conv_up1.weight': one,
    'conv_up2.weight': one,
    'conv_hr.weight': one,
    'conv_last.weight': one,
  };
}

export function esrganOld(): Layout {
  return {
    'model.0.weight': { shape: [64, 3, 3, 3] },
    'model.1.sub.0.RDB1.conv1.0.weight': one,
    'model.10.weight': one,
  };
}

export function srvgg(scale: number): Layout {
  return {
    'body.0.weight': { shape: [64, 3, 3, 3] },
    'body.0.bias': { shape: [64] },
    'body.1.weight': { shape: [64] },
    'body.2.weight': { shape: [64, 64, 3, 3] },
    'body.3.weight': { shape: [64] },
    'body.4.weight': { shape: [3 * scale * scale, 64, 3, 3] },
    'body.4.bias': { shape: [3 * scale * scale] },
  };
}

/** RestoreFormer: a VQ encoder/decoder; its attention blocks have norm1 + norm2 (a VAE's have one norm). */
export function restoreFormer(): Layout {
  return {
    'encoder.conv_in.weight': { shape: [64, 3, 3, 3] },
    'encoder.down.0.block.0.conv1.weight': one,
    'encoder.mid.attn_1.norm1.weight': one,
    'encoder.mid.attn_1.norm2.weight': one,
    'encoder.mid.attn_1.q.weight': one,
    'decoder.conv_in.weight': { shape: [512, 256, 3, 3] },
    'decoder.mid.attn_1.norm1.weight': one,
    'decoder.mid.attn_1.norm2.weight': one,
    'decoder.up.0.block.0.conv1.weight': one,
    'quant_conv.weight': { shape: [256, 512, 1, 1] },
    'post_quant_conv.weight': { shape: [512, 256, 1, 1] },
    'quantize.embedding.weight': { shape: [1024, 256] },
  };
}

/** GFPGAN v1.x (v1.3/v1.4 clean): a U-Net body feeding a StyleGAN2 decoder. */
export function gfpgan(): Layout {
  return {
    'conv_body_first.weight': { shape: [32, 3, 1, 1] },
    'conv_body_down.0.conv1.weight': one,
    'final_linear.weight': one,
    'stylegan_decoder.constant_input.weight': { shape: [1, 512, 4, 4] },
    'stylegan_decoder.style_mlp.1.weight': one,
    'toRGB.0.weight': one,
  };
}

/** CodeFormer: a VQ codebook with a transformer predicting code indices. */
export function codeFormer(): Layout {
  return {
    position_emb: { shape: [256, 512] },
    'quantize.embedding.weight': { shape: [1024, 256] },
    'encoder.blocks.0.weight': one,
    'generator.blocks.0.weight': one,
    'ft_layers.0.self_attn.in_proj_weight': one,
    'idx_pred_layer.0.weight': one,
  };
}
