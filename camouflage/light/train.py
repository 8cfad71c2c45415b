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
import json
import logging
import math
from pathlib import Path

log = logging.getLogger("camstream")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm"}
DEFAULT_CAPTION = "a photo of a person"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="images and/or videos (frames are sampled); NAME.txt = caption")
    p.add_argument("--models-dir", metavar="DIR", help="folder in the manifest layout (sd15, vae, farl, facer_attributes)")
    p.add_argument("--output", required=True, metavar="DIR", help="checkpoints, loss.csv, validation/ and the trained adapters")
    p.add_argument("--steps", type=int, default=10000, help="optimizer steps in total (a resumed run continues to this)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="PATH",
                   help="continue from a checkpoint folder (bare --resume: the latest in OUTPUT)")
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--frames-per-video", type=int, default=32)
    p.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps (and at the end)")
    p.add_argument("--validate-every", type=int, default=1000, help="write a validation image every N steps (0: never)")
    p.add_argument("--validation-steps", type=int, default=20, help="denoising steps of the validation image")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--caption", default=DEFAULT_CAPTION, help="caption for images without a .txt file")
    p.add_argument("--drop-rate", type=float, default=0.05, help="probability to drop each condition (map, identity, caption)")
    p.add_argument("--context", type=float, default=0.5, help="crop = face + this fraction of its size on each side")
    p.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default="auto", help="auto: bf16 on GPU, no on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu forces CPU; auto uses a GPU when there is one")


def _caption(path: Path, fallback: str) -> str:
    txt = path.with_suffix(".txt")
    return txt.read_text().strip() if txt.exists() and txt.read_text().strip() else fallback


def load_frames(folder: Path, frames_per_video: int, fallback_caption: str) -> list[tuple]:  # (RGB uint8, caption, name)
    import av
    import numpy as np
    from PIL import Image

    from streamer.errors import InputError

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    out = []
    for path in files:
        caption = _caption(path, fallback_caption)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            out.append((np.asarray(Image.open(path).convert("RGB")), caption, path.name))
            continue
        try:
            with av.open(str(path)) as c:
                total = c.streams.video[0].frames or sum(1 for _ in c.decode(video=0))
            wanted = set(np.linspace(0, total - 1, min(frames_per_video, total)).round().astype(int).tolist())
            with av.open(str(path)) as c:  # keep only the sampled frames in memory
                for i, f in enumerate(c.decode(video=0)):
                    if i in wanted:
                        out.append((f.to_ndarray(format="rgb24"), caption, f"{path.name}#{i}"))
        except (av.error.FFmpegError, IndexError) as exc:
            log.warning("%s: skipped (%s)", path, exc)
    if not out:
        raise InputError(f"{folder}: no images or videos to train on")
    return out


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


def latest_checkpoint(output: Path) -> Path | None:
    found = [(int(p.name.split("-")[1]), p) for p in output.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return max(found)[1] if found else None


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    from streamer.errors import ConfigError
    from tracking.detectors import build_detector

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
    resume = args.resume
    if resume == "latest":
        resume = latest_checkpoint(output)
        if resume is None:
            raise ConfigError(f"--resume: no checkpoint-STEP folder in {output}")
    cpu = args.device == "cpu" or not torch.cuda.is_available()
    precision = ("no" if cpu else "bf16") if args.mixed_precision == "auto" else args.mixed_precision
    accelerator = Accelerator(mixed_precision=precision, cpu=cpu, project_dir=str(output))
    set_seed(args.seed)
    device = accelerator.device
    weight_dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

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

    step = 0
    if resume:
        accelerator.load_state(str(resume))
        step = json.loads((Path(resume) / "camstream_step.json").read_text())["step"]
        log.info("resumed from %s at step %d", resume, step)

    def save(tag_step: int) -> Path:
        path = output / f"checkpoint-{tag_step}"
        accelerator.save_state(str(path), safe_serialization=True)
        (path / "camstream_step.json").write_text(json.dumps({"step": tag_step}))
        return path

    loss_log = output / "loss.csv"
    if not loss_log.exists():
        loss_log.write_text("step,loss,eval_loss\n")
    if step == 0:
        with loss_log.open("a") as f:
            f.write(f"0,,{evaluate():.6f}\n")
    rng = torch.Generator().manual_seed(args.seed + 1000 + step)
    running = math.nan
    while step < args.steps:
        idx = torch.randint(0, len(crops), (args.batch_size,), generator=rng)
        noise = torch.randn(latents_all[idx].shape, generator=rng).to(device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(idx),), generator=rng).to(device)
        drop = (torch.rand(len(idx), 3, generator=rng) < args.drop_rate).to(device)
        with accelerator.accumulate(adapters), accelerator.autocast():
            loss = loss_on(idx, noise, t, drop)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(adapters.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        step += 1
        loss = loss.detach()
        running = float(loss) if math.isnan(running) else 0.9 * running + 0.1 * float(loss)
        last = step == args.steps
        eval_loss = evaluate() if (step % args.save_every == 0 or last) else None
        if step % args.log_every == 0 or last or eval_loss is not None:
            log.info("step %d/%d loss %.5f (avg %.5f)%s", step, args.steps, float(loss), running,
                     f" eval {eval_loss:.5f}" if eval_loss is not None else "")
            with loss_log.open("a") as f:
                f.write(f"{step},{float(loss):.6f},{'' if eval_loss is None else f'{eval_loss:.6f}'}\n")
        if args.validate_every and (step % args.validate_every == 0 or last):
            validate(step)
        if step % args.save_every == 0 or last:
            save(step)

    trained = accelerator.unwrap_model(adapters)
    trained["t2i"].save_pretrained(output / loading.T2I_ADAPTER, safe_serialization=True)
    save_ip_adapter(ip_adapter_state_dict(unet), output / loading.IP_ADAPTER / loading.IP_ADAPTER_WEIGHTS)
    print(f"Light adapters written to {output / loading.T2I_ADAPTER} and {output / loading.IP_ADAPTER} "
          "(copy both to MODELS_DIR/)")
    return 0
