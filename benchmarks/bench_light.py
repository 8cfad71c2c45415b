"""CAMOUFLaGE-Light vs CAMOUFLaGE-Base: time per image and per denoising step, full-size
SD1.5-shaped models with RANDOM weights (a random U-Net costs what a trained one costs).

    python benchmarks/bench_light.py                     # CPU, 768 px, 1 step each
    python benchmarks/bench_light.py --device cuda --steps 4 --dtype float16

Per step = time inside the denoisers (U-Net, ControlNets, T2I-Adapter) per scheduler step,
measured with forward hooks; per image = the whole call (VAE encode/decode included).
Both pipelines run with ``strength=1`` so that exactly ``--steps`` steps run, the same
scheduler, and their default guidance (Light: a_s != 1 -> 2 U-Net branches; Base: text CFG
+ IDF -> 3 branches). Base's five ControlNets share ONE set of weights here (same compute,
a fifth of the memory: the real ones would not fit next to the rest on a small machine).
Not timed: annotators, captioner, FACER/FaRL (a ViT-B/16 on a 224 px crop, ~0.1 s on CPU).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SD15_UNET = dict(
    sample_size=96, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8,
)
SD15_VAE = dict(
    block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=768,
)
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                 clip_sample=False, set_alpha_to_one=False, num_train_timesteps=1000)


class Timer:
    """Accumulates wall time spent inside the forward of the hooked modules."""

    def __init__(self, modules, device: torch.device) -> None:  # noqa: ANN001
        self.seconds, self.calls, self.device, self._start = 0.0, 0, device, {}
        for m in modules:
            m.register_forward_pre_hook(self._pre)
            m.register_forward_hook(self._post)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _pre(self, module, args) -> None:  # noqa: ANN001
        self._sync()
        self._start[id(module)] = time.perf_counter()

    def _post(self, module, args, output) -> None:  # noqa: ANN001
        self._sync()
        self.seconds += time.perf_counter() - self._start.pop(id(module))
        self.calls += 1


def shared_parts(dtype: torch.dtype):  # noqa: ANN201
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from camouflage.models.tiny_light import tiny_tokenizer_for_bench

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).to(dtype)
    vae = AutoencoderKL(**SD15_VAE).to(dtype)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, vocab_size=49408)).to(dtype)
    return unet, vae, text, tiny_tokenizer_for_bench()


def build_light(unet, vae, text, tokenizer, scheduler: str, dtype: torch.dtype):  # noqa: ANN001, ANN201
    from diffusers import DDIMScheduler
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from camouflage.light.pipeline import CamouflageLightPipeline, make_scheduler
    from camouflage.models.adapters import init_ip_adapter_state_dict, make_t2i_adapter

    farl = CLIPVisionModelWithProjection(CLIPVisionConfig(  # FaRL = CLIP ViT-B/16
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224,
        patch_size=16, projection_dim=512)).to(dtype)
    pipe = CamouflageLightPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=make_scheduler(scheduler, DDIMScheduler(**SCHEDULER).config),
                                   adapter=make_t2i_adapter(unet.config).to(dtype), image_encoder=farl)
    state = init_ip_adapter_state_dict(unet, 512)
    nested = {"image_proj": {}, "ip_adapter": {}}
    for k, v in state.items():
        head, _, rest = k.partition(".")
        nested[head][rest] = v.to(dtype)
    pipe.load_ip_adapter(nested, subfolder="", weight_name="", image_encoder_folder=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_base(unet, vae, text, tokenizer, scheduler: str, dtype: torch.dtype):  # noqa: ANN001, ANN201
    from diffusers import ControlNetModel, DDIMScheduler

    from camouflage.base.pipeline import CamouflageBasePipeline, make_scheduler
    from camouflage.models.adapters import make_idf_controlnet
    from camouflage.models.names import CONTROLS

    cn = ControlNetModel.from_unet(unet).to(dtype)
    pipe = CamouflageBasePipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                  controlnet=[cn] * len(CONTROLS), idf_controlnet=make_idf_controlnet(unet).to(dtype),
                                  scheduler=make_scheduler(scheduler, DDIMScheduler(**SCHEDULER).config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--resolution", type=int, default=768)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--scheduler", default="ddim", help="same for both (dpmpp_sde_karras: 2 U-Net calls per step)")
    p.add_argument("--only", choices=["light", "base"], help="run one pipeline only")
    p.add_argument("--light-unguided", action="store_true",
                   help="also time Light with a_s = 1 (one U-Net branch: the light.anonymization_scale default)")
    args = p.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    r = args.resolution
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (r, r, 3), dtype=np.uint8)

    unet, vae, text, tokenizer = shared_parts(dtype)
    rows = []
    # Base first: Light installs IP-Adapter processors into the shared U-Net.
    for name in ("base", "light"):
        if args.only and name != args.only:
            continue
        if name == "light":
            pipe = build_light(unet, vae, text, tokenizer, args.scheduler, dtype).to(device)
            from camouflage.models.names import MAP_CHANNELS

            amap = np.zeros((MAP_CHANNELS, r, r), np.float32)
            amap[:, r // 4: 3 * r // 4, r // 4: 3 * r // 4] = 0.5
            timer = Timer([pipe.unet, pipe.adapter], device)
            ident = torch.randn(1, 512)

            def call(pipe=pipe, amap=amap, ident=ident, a_s=1.25):  # noqa: ANN001, ANN202
                return pipe(image, amap, identity_embeds=ident, anonymization_scale=a_s, strength=1.0,
                            num_inference_steps=args.steps, generator=torch.Generator().manual_seed(0))
        else:
            pipe = build_base(unet, vae, text, tokenizer, args.scheduler, dtype).to(device)
            timer = Timer([pipe.unet, pipe.idf_controlnet, *set(pipe.controlnet.nets)], device)
            controls = {c: image for c in ("depth", "normal", "seg", "pose", "lineart")}

            def call(pipe=pipe, controls=controls):  # noqa: ANN001, ANN202
                return pipe(image, controls, prompt="a person", strength=1.0, anonymization_scale=1.25,
                            num_inference_steps=args.steps, generator=torch.Generator().manual_seed(0), output_type="np")
        with torch.no_grad():
            start = time.perf_counter()
            call()
            total = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        rows.append((name, total, timer.seconds / args.steps, timer.calls, rss))
        if name == "light" and args.light_unguided:
            timer.seconds, timer.calls = 0.0, 0
            with torch.no_grad():
                start = time.perf_counter()
                call(a_s=1.0)
                total = time.perf_counter() - start
            rows.append(("light@1", total, timer.seconds / args.steps, timer.calls, rss))
        del pipe

    print(f"\n{r} px, {args.steps} step(s), {args.scheduler}, {args.dtype} on {device} (random full-size weights)")
    print(f"{'method':<8} {'s/image':>9} {'s/step':>9} {'denoiser calls':>15} {'peak RSS GB':>12}")
    print("(light: a_s=1.25, 2 U-Net branches; light@1: a_s=1, 1 branch; base: text CFG + IDF, 3 branches)")
    for name, total, per_step, calls, rss in rows:
        print(f"{name:<8} {total:>9.2f} {per_step:>9.2f} {calls:>15d} {rss:>12.1f}")
    by_name = {row[0]: row for row in rows}
    for light in ("light", "light@1"):
        if "base" in by_name and light in by_name:
            (_, base_total, base_step, *_), (_, light_total, light_step, *_) = by_name["base"], by_name[light]
            print(f"{light}: {base_step / light_step:.1f}x faster than base per step, "
                  f"{base_total / light_total:.1f}x per image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
