"""``camstream train light``: train CAMOUFLaGE-Light's two adapters jointly, SD frozen.

    camstream train light --data faces/ --models-dir models --output runs/light --steps 20000
    camstream train light ... --resume            # continue the latest OUTPUT/checkpoint-STEP

Each training sample is a square crop around the largest detected face (or the centre
of an image without one) with
  * its 41-channel map (FACER attributes + keypoints of every face in the crop) -> T2I-Adapter,
  * the FaRL embedding of its main face -> IP-Adapter,
  * a caption: ``NAME.txt`` next to the image or video, else ``--caption`` (training only;
    inference runs with an empty prompt),
and the loss is SD's epsilon-prediction MSE. Both condition streams are dropped now and
then (``--drop-rate``) as IP-Adapter training does, so each adapter also learns alone.
Frozen parts (FaRL, FACER, VAE, text encoder) run once, before the loop.

Accelerate runs it: bf16 on a GPU, fp32 on CPU. Writes ``OUTPUT/loss.csv`` (step, loss,
eval_loss on a fixed noise/timestep set), ``OUTPUT/checkpoint-STEP/``, validation images
``OUTPUT/validation/step-STEP.png`` every ``--validate-every`` steps, and the final
``OUTPUT/ip_adapter_light/`` and ``OUTPUT/t2i_adapter_light/`` (copy them to --models-dir).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..training.common import VIDEO_SUFFIXES, add_common_arguments, sample_frames

log = logging.getLogger("camstream")

DEFAULT_CAPTION = "a photo of a person"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="images and/or videos (frames are sampled); NAME.txt = caption")
    p.add_argument("--models-dir", metavar="DIR", help="folder in the manifest layout (sd15, vae, farl, facer_attributes)")
    p.add_argument("--output", required=True, metavar="DIR", help="checkpoints, loss.csv, validation/ and the trained adapters")
    add_common_arguments(p, lr=1e-4)
    p.add_argument("--validate-every", type=int, default=1000, help="write a validation image every N steps (0: never)")
    p.add_argument("--validation-steps", type=int, default=20, help="denoising steps of the validation image")
    p.add_argument("--caption", default=DEFAULT_CAPTION, help="caption for images without a .txt file")
    p.add_argument("--drop-rate", type=float, default=0.05, help="probability to drop each condition (map, identity, caption)")
    p.add_argument("--context", type=float, default=0.5, help="crop = face + this fraction of its size on each side")


def _caption(path: Path, fallback: str) -> str:
    txt = path.with_suffix(".txt")
    return txt.read_text().strip() if txt.exists() and txt.read_text().strip() else fallback


def load_frames(folder: Path, frames_per_video: int, fallback_caption: str) -> list[tuple]:  # (RGB uint8, caption, name)
    return [(image, _caption(path, fallback_caption), f"{path.name}#{i}" if path.suffix.lower() in VIDEO_SUFFIXES else path.name)
            for image, path, i in sample_frames(folder, frames_per_video)]


def build_samples(frames: list[tuple], resolution: int, context: float, attributes, farl, detector):  # noqa: ANN001, ANN201
    """Crops, maps, FaRL embeddings and captions of every frame (frozen models, run once)."""
    import numpy as np
    import torch

    from .attribute_map import build_attribute_map
    from .attributes import FaceAttributes, face_crops, face_keypoints, square_crop

    crops, maps, embeds, captions = [], [], [], []
    for image, caption, _ in frames:
        h, w = image.shape[:2]
        dets = detector.detect(image) if detector is not None else None
        boxes = [] if dets is None else list(dets.xyxy)
        landmarks = list(dets.data["landmarks"]) if dets is not None and "landmarks" in dets.data else [None] * len(boxes)
        if boxes:
            main = int(np.argmax([(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]))
            x1, y1, x2, y2 = boxes[main]
            side = max(x2 - x1, y2 - y1) * (1 + 2 * context)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        else:
            side, cx, cy = min(h, w), w / 2, h / 2
        ox, oy, scale = cx - side / 2, cy - side / 2, resolution / side
        crop = square_crop(image, ox, oy, side, resolution)
        probs = attributes.predict_faces(image, boxes)
        faces = [FaceAttributes(np.asarray(b, np.float32), probs[i], face_keypoints(b, landmarks[i]))
                 for i, b in enumerate(boxes)]
        maps.append(torch.from_numpy(build_attribute_map(faces, (resolution, resolution), (ox, oy), scale)))
        face_box = boxes[main] if boxes else np.array([0, 0, w, h], np.float32)
        with torch.no_grad():
            embeds.append(farl(pixel_values=face_crops(image, [face_box], farl.config.image_size)).image_embeds[0])
        crops.append(torch.from_numpy(crop).permute(2, 0, 1).float() / 127.5 - 1)
        captions.append(caption)
    return torch.stack(crops), torch.stack(maps), torch.stack(embeds).float(), captions


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    from streamer.errors import ConfigError
    from tracking.detectors import build_detector

    from ..training.common import make_accelerator, resolve_resume, train_loop
    from . import loading
    from .adapters import (
        init_ip_adapter_state_dict,
        ip_adapter_parameters,
        ip_adapter_state_dict,
        make_t2i_adapter,
        save_ip_adapter,
    )
    from .attributes import FacerAttributeModel
    from .pipeline import CamouflageLightPipeline

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    resume = resolve_resume(args.resume, output)
    accelerator, weight_dtype = make_accelerator(args, output)
    device = accelerator.device

    paths = loading.resolve_models(args.models_dir, (loading.SD15, loading.VAE, loading.FARL, loading.FACER_ATTRIBUTES))
    sd = paths[loading.SD15]
    vae = AutoencoderKL.from_pretrained(paths[loading.VAE], use_safetensors=True).requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(sd / "unet", use_safetensors=True).requires_grad_(False)
    text_encoder = CLIPTextModel.from_pretrained(sd / "text_encoder", use_safetensors=True).requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(sd / "tokenizer")
    noise_scheduler = DDPMScheduler.from_pretrained(sd / "scheduler")
    farl = CLIPVisionModelWithProjection.from_pretrained(paths[loading.FARL], use_safetensors=True).requires_grad_(False)
    attributes = FacerAttributeModel.from_pretrained(paths[loading.FACER_ATTRIBUTES]).requires_grad_(False)
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)

    # The adapters: a fresh T2I-Adapter, and an IP-Adapter installed in the U-Net by
    # diffusers' own loader, so training updates the very processors inference uses.
    adapter = make_t2i_adapter(unet.config, vae_scale, seed=args.seed)
    multiple = max(vae_scale * 2 ** (len(unet.config.block_out_channels) - 1), adapter.total_downscale_factor)
    if args.resolution % multiple:
        raise ConfigError(f"--resolution {args.resolution}: must be a multiple of {multiple}")
    ip_state = init_ip_adapter_state_dict(unet, farl.config.projection_dim, seed=args.seed)
    unet._load_ip_adapter_weights([{
        "image_proj": {k.removeprefix("image_proj."): v for k, v in ip_state.items() if k.startswith("image_proj.")},
        "ip_adapter": {k.removeprefix("ip_adapter."): v for k, v in ip_state.items() if k.startswith("ip_adapter.")},
    }])
    unet.requires_grad_(False)
    ip_params = ip_adapter_parameters(unet)
    for p in ip_params:
        p.requires_grad_(True)
    adapters = torch.nn.ModuleDict({
        "t2i": adapter,
        "ip_proj": unet.encoder_hid_proj,
        "ip_attn": torch.nn.ModuleList(unet.attn_processors[n] for n in unet.attn_processors
                                       if not n.endswith("attn1.processor")),
    })
    adapters.train()

    detector = None
    try:
        detector = build_detector("libfacedetection", 0.5, 960)
    except Exception as exc:  # noqa: BLE001 - no detector: train on centre crops without faces
        log.warning("no face detector (%s): centre crops, empty maps", exc)
    frames = load_frames(Path(args.data), args.frames_per_video, args.caption)
    crops, maps, embeds, captions = build_samples(frames, args.resolution, args.context, attributes, farl, detector)
    log.info("Light training: %d samples (%d with faces) at %d px, %d steps, batch %d, %s", len(crops),
             int((maps.flatten(1).amax(1) > 0).sum()), args.resolution, args.steps, args.batch_size, device)

    optimizer = torch.optim.AdamW([p for p in adapters.parameters() if p.requires_grad], lr=args.lr, weight_decay=1e-2)
    adapters, optimizer = accelerator.prepare(adapters, optimizer)
    for model in (vae, unet, text_encoder):
        model.to(device, dtype=weight_dtype)
    accelerator.unwrap_model(adapters).to(torch.float32)  # trainable weights stay fp32 (autocast mixes)

    with torch.no_grad():
        def encode_text(texts: list[str]) -> torch.Tensor:
            ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids.to(device)
            return text_encoder(ids)[0].float()

        texts_all = encode_text(captions)
        empty_text = encode_text([""])[0]
        latents_all = torch.cat([
            vae.encode(crops[i:i + 8].to(device, weight_dtype)).latent_dist.mean * vae.config.scaling_factor
            for i in range(0, len(crops), 8)
        ]).float()
    maps, embeds = maps.to(device), embeds.to(device)

    def loss_on(idx, noise, t, drop=None) -> torch.Tensor:  # noqa: ANN001
        latents, cond, ident, text = latents_all[idx], maps[idx], embeds[idx], texts_all[idx]
        if drop is not None:  # (B, 3) booleans: map, identity, caption
            cond = torch.where(drop[:, 0, None, None, None], torch.zeros_like(cond), cond)
            ident = torch.where(drop[:, 1, None], torch.zeros_like(ident), ident)
            text = torch.where(drop[:, 2, None, None], empty_text.expand_as(text), text)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        residuals = adapters["t2i"](cond)
        pred = unet(noisy.to(weight_dtype), t, encoder_hidden_states=text.to(weight_dtype),
                    added_cond_kwargs={"image_embeds": [ident[:, None].to(weight_dtype)]},
                    down_intrablock_additional_residuals=[r.to(weight_dtype) for r in residuals]).sample
        return F.mse_loss(pred.float(), noise.float())

    # a fixed evaluation set (same noise and timesteps every time): losses that compare
    g = torch.Generator().manual_seed(args.seed + 1)
    n_eval = min(len(crops), 8)
    eval_idx = torch.arange(n_eval)
    eval_noise = torch.randn(latents_all[:n_eval].shape, generator=g).to(device)
    eval_t = torch.linspace(50, noise_scheduler.config.num_train_timesteps - 50, n_eval).long().to(device)

    def evaluate() -> float:
        adapters.eval()
        with torch.no_grad(), accelerator.autocast():
            value = float(loss_on(eval_idx, eval_noise, eval_t))
        adapters.train()
        return value

    def validate(step: int) -> None:
        pipe = CamouflageLightPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=DDIMScheduler.from_config(noise_scheduler.config),
                                       adapter=accelerator.unwrap_model(adapters)["t2i"], image_encoder=farl.to(device))
        pipe.set_progress_bar_config(disable=True)
        adapters.eval()
        with accelerator.autocast():
            image = ((crops[:1] + 1) / 2).to(device)
            out = pipe(image, maps[:1], prompt=captions[0], identity_embeds=embeds[:1], strength=0.6,
                       num_inference_steps=args.validation_steps, generator=torch.Generator().manual_seed(args.seed)).images[0]
        adapters.train()
        folder = output / "validation"
        folder.mkdir(exist_ok=True)
        side = np.concatenate([((image[0].permute(1, 2, 0).float().cpu().numpy()) * 255).round(), (out * 255).round()], 1)
        Image.fromarray(side.clip(0, 255).astype(np.uint8)).save(folder / f"step-{step}.png")

    def batch_loss(rng: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(crops), (args.batch_size,), generator=rng)
        noise = torch.randn(latents_all[idx].shape, generator=rng).to(device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(idx),), generator=rng).to(device)
        drop = (torch.rand(len(idx), 3, generator=rng) < args.drop_rate).to(device)
        return loss_on(idx, noise, t, drop)

    train_loop(accelerator, adapters, optimizer, output, steps=args.steps, seed=args.seed, batch_loss=batch_loss,
               evaluate=evaluate, save_every=args.save_every, log_every=args.log_every, resume=resume,
               validate=validate, validate_every=args.validate_every)

    trained = accelerator.unwrap_model(adapters)
    trained["t2i"].save_pretrained(output / loading.T2I_ADAPTER, safe_serialization=True)
    save_ip_adapter(ip_adapter_state_dict(unet), output / loading.IP_ADAPTER / loading.IP_ADAPTER_WEIGHTS)
    print(f"Light adapters written to {output / loading.T2I_ADAPTER} and {output / loading.IP_ADAPTER} "
          "(copy both to MODELS_DIR/)")
    return 0
