"""What CAMOUFLaGE-Base costs per image, by component, with full-size models.

Every model is built from its real architecture with random weights (no download): a
random SD1.5 UNet costs exactly what Realistic Vision costs. The real pipeline
(camouflage/base/pipeline.py) runs a few steps; hooks time each component.

    python benchmarks/bench_base.py                       # CPU, 768 px, 1 step (slow: ~7 GB RSS)
    python benchmarks/bench_base.py --device cuda --dtype float16 --steps 4

To keep CPU memory down, the five positive ControlNets share ONE instance by default
(same architecture, so the same cost per call; --separate-controlnets builds five).
Prints a table: seconds per call, calls per step, seconds per step, and the projection
for one image at --project-steps/--strength with the chosen scheduler.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from camouflage.base.pipeline import CamouflageBasePipeline, make_scheduler  # noqa: E402
from camouflage.models.adapters import make_idf_controlnet  # noqa: E402
from camouflage.models.names import CONTROLS  # noqa: E402

SD15_UNET = dict(
    sample_size=96, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8,
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=768,
)
SD_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1)


class Clock:
    """Accumulates wall time per component name (CUDA-synchronised)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._start: dict[int, float] = {}

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def hook(self, module: torch.nn.Module, name: str) -> None:
        def pre(m, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            self.sync()
            self._start[id(m)] = time.perf_counter()

        def post(m, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            self.sync()
            self.total[name] += time.perf_counter() - self._start.pop(id(m))
            self.calls[name] += 1

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    def wrap(self, obj, attr: str, name: str) -> None:  # noqa: ANN001
        fn = getattr(obj, attr)

        def timed(*a, **k):  # noqa: ANN002, ANN003, ANN202
            self.sync()
            t = time.perf_counter()
            out = fn(*a, **k)
            self.sync()
            self.total[name] += time.perf_counter() - t
            self.calls[name] += 1
            return out

        setattr(obj, attr, timed)


def build_annotators(device: torch.device, dtype: torch.dtype) -> dict:
    """Full-size annotator architectures with random weights: (name, callable on a 768 px image)."""
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        ConvNextConfig,
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        UperNetConfig,
        UperNetForSemanticSegmentation,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux.lineart import Generator
        from controlnet_aux.open_pose.model import bodypose_model

    out = {}
    depth = DepthAnythingForDepthEstimation(DepthAnythingConfig(  # Depth-Anything-V2-Small
        backbone_config={"model_type": "dinov2", "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
                         "image_size": 518, "patch_size": 14, "out_indices": [3, 6, 9, 12], "reshape_hidden_states": False,
                         "out_features": ["stage3", "stage6", "stage9", "stage12"]},
        reassemble_hidden_size=384, neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64)).to(device, dtype).eval()
    out["depth (DepthAnything-S 518)"] = lambda: depth(pixel_values=torch.randn(1, 3, 518, 518, device=device, dtype=dtype))
    seg = UperNetForSemanticSegmentation(UperNetConfig(  # upernet-convnext-small
        backbone_config=ConvNextConfig(hidden_sizes=[96, 192, 384, 768], depths=[3, 3, 27, 3],
                                       out_features=["stage1", "stage2", "stage3", "stage4"]),
        hidden_size=512, auxiliary_in_channels=384, num_labels=150, use_auxiliary_head=False)).to(device, dtype).eval()
    out["seg (UperNet-ConvNeXt-S 512)"] = lambda: seg(pixel_values=torch.randn(1, 3, 512, 512, device=device, dtype=dtype))
    try:
        import types

        from controlnet_aux.normalbae.nets.NNET import NNET

        args = types.SimpleNamespace(mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4, importance_ratio=0.7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            normal = NNET(args).to(device, dtype).eval()
        out["normal (NormalBAE 768)"] = lambda: normal(torch.randn(1, 3, 768, 768, device=device, dtype=dtype))
    except Exception as exc:  # noqa: BLE001 - its EfficientNet comes via torch.hub (local); report, do not fail
        print(f"normal annotator not timed: {type(exc).__name__}: {exc}", file=sys.stderr)
    pose = bodypose_model().to(device, dtype).eval()
    out["pose (OpenPose body 768)"] = lambda: pose(torch.randn(1, 3, 768, 768, device=device, dtype=dtype))
    lineart = Generator(3, 1, 3).to(device, dtype).eval()
    out["lineart (informative-drawings 768)"] = lambda: lineart(torch.randn(1, 3, 768, 768, device=device, dtype=dtype))
    blip = BlipForConditionalGeneration(BlipConfig()).to(device, dtype).eval()  # BLIP base
    out["caption (BLIP-base, 20 tokens)"] = lambda: blip.generate(
        pixel_values=torch.randn(1, 3, 384, 384, device=device, dtype=dtype), max_new_tokens=20, min_new_tokens=20)
    return out


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--resolution", type=int, default=768)
    p.add_argument("--steps", type=int, default=1, help="denoising steps actually run (strength 1)")
    p.add_argument("--scheduler", default="ddim", help="scheduler for the timed run (ddim: one UNet call per step)")
    p.add_argument("--project-steps", type=int, default=25)
    p.add_argument("--project-strength", type=float, default=0.75)
    p.add_argument("--project-scheduler", default="dpmpp_sde_karras")
    p.add_argument("--guidance-scale", type=float, default=7.5)
    p.add_argument("--separate-controlnets", action="store_true")
    p.add_argument("--skip-annotators", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)

    import diffusers
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from camouflage.models.tiny import tiny_clip_tokenizer

    diffusers.utils.logging.set_verbosity_error()  # "modules that should be kept in float32: []" on .to(dtype)
    clock = Clock(device)
    rows: list[tuple[str, float, float]] = []  # (component, seconds per call, calls per image)
    if not args.skip_annotators:
        annotators = build_annotators(device, dtype)
        with torch.inference_mode():
            for name, run in annotators.items():
                run()  # warm-up
                clock.sync()
                t = time.perf_counter()
                run()
                clock.sync()
                rows.append((f"annotator: {name}", time.perf_counter() - t, 1))
        del annotators
        gc.collect()
        print(f"annotators timed; peak RSS {rss_gb():.1f} GB", file=sys.stderr)

    t = time.perf_counter()
    unet = UNet2DConditionModel(**SD15_UNET)
    controlnet = ControlNetModel.from_unet(unet)
    nets = [controlnet] + [ControlNetModel.from_unet(unet) if args.separate_controlnets else controlnet for _ in range(4)]
    idf = make_idf_controlnet(unet)
    vae = AutoencoderKL(**SD15_VAE)
    tok = tiny_clip_tokenizer()  # the tokenizer's cost is nil; the text encoder is full-size CLIP ViT-L/14 text
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                                        vocab_size=49408, max_position_embeddings=77, projection_dim=768))
    pipe = CamouflageBasePipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, controlnet=MultiControlNetModel(nets),
                                  idf_controlnet=idf, scheduler=make_scheduler(args.scheduler, DDIMScheduler(**SD_SCHEDULER).config))
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device, dtype)
    print(f"models built in {time.perf_counter() - t:.0f} s; peak RSS {rss_gb():.1f} GB", file=sys.stderr)

    clock.hook(unet, "UNet (all branches, one batched call)")
    for i in range(len(CONTROLS)):
        if args.separate_controlnets or i == 0:
            clock.hook(pipe.controlnet.nets[i], "ControlNets x5 (positive)")
    clock.hook(idf, "ControlNet IDF (negative)")
    clock.hook(text, "text encoder")
    clock.wrap(vae, "encode", "VAE encode")
    clock.wrap(vae, "decode", "VAE decode")

    r = args.resolution
    image = np.random.default_rng(0).integers(0, 256, (r, r, 3), dtype=np.uint8)
    controls = {c: image for c in CONTROLS}
    t = time.perf_counter()
    pipe(image, controls, prompt="a photo of a person", num_inference_steps=args.steps, strength=1.0,
         guidance_scale=args.guidance_scale, generator=torch.Generator().manual_seed(0), output_type="np")
    wall = time.perf_counter() - t

    # model evaluations per image with the projected scheduler (DPM++ SDE: 2 per step)
    proj = make_scheduler(args.project_scheduler, DDIMScheduler(**SD_SCHEDULER).config)
    proj.set_timesteps(args.project_steps)
    t_start = max(args.project_steps - min(int(args.project_steps * args.project_strength), args.project_steps), 0)
    evals = len(proj.timesteps[t_start * proj.order:])
    evals_run = clock.calls["UNet (all branches, one batched call)"]

    for name in clock.total:
        per_call = clock.total[name] / clock.calls[name]
        per_image = evals if name not in ("VAE encode", "VAE decode", "text encoder") else (2 if name == "text encoder" else 1)
        calls_per_eval = clock.calls[name] / evals_run if per_image == evals else None
        rows.append((name, per_call * (calls_per_eval or 1), per_image))
    print()
    print(f"CAMOUFLaGE-Base, random full-size weights, {r} px, {args.device} {args.dtype}, torch threads {torch.get_num_threads()}, "
          f"CFG {'on' if args.guidance_scale > 1 else 'off'} (UNet batch {3 if args.guidance_scale > 1 else 2})")
    print(f"timed run: {args.steps} step(s) with {args.scheduler} = {evals_run} model evaluation(s), {wall:.1f} s wall; "
          f"peak RSS {rss_gb():.1f} GB")
    print(f"projection: {args.project_steps} steps x strength {args.project_strength} with {args.project_scheduler} "
          f"= {evals} model evaluations per image")
    print()
    header = ("component", "s / eval or call", "per image", "s / image")
    print(f"| {header[0]:<46} | {header[1]:>16} | {header[2]:>9} | {header[3]:>10} |")
    print(f"|{'-' * 48}|{'-' * 18}:|{'-' * 10}:|{'-' * 11}:|")
    total = 0.0
    for name, sec, n in rows:
        total += sec * n
        print(f"| {name:<46} | {sec:>16.2f} | {n:>9} | {sec * n:>10.1f} |")
    step = sum(sec for name, sec, n in rows if n == evals)
    print(f"| {'one model evaluation (UNet + 6 ControlNets)':<46} | {step:>16.2f} | {evals:>9} | {step * evals:>10.1f} |")
    print(f"| {'TOTAL per image (one face crop)':<46} | {'':>16} | {'':>9} | {total:>10.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
