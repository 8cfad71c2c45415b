"""CAMOUFLaGE-Base as a diffusers pipeline (arXiv 2403.14790, Sec. 3).

The paper's path: img2img from the VAE encoding of the original: five ControlNets (depth,
normal, seg, pose, lineart; lineart switched off after ``lineart_stop`` of the steps, and
then not run at all) give the positive branch, text CFG with the image's caption; a sixth,
identity-function (IDF) ControlNet conditioned on the original's VAE latents gives the
negative branch, and :func:`camouflage.guidance.identity_guidance` mixes them with the
anonymization scale ``a_s``:

    eps = eps_idf + a_s * (eps_pos - eps_idf)

a_s = 0 reproduces the original, 1 follows the positive controls, > 1 pushes away from it.
All branches run in ONE batched UNet call per step. Nobody publishes an IDF ControlNet
(``camstream train idf`` trains one): without it, or at a_s = 1, the IDF branch is not run.

The identity-blind path (``mask_image``; the default without an IDF, camouflage/blind.py):
the face starts from the seeded noise (strength 1 inside the mask), the context outside it
is re-imposed from the given image's latents at every step, and depth/normal/seg/lineart
act outside the mask only (:data:`FACE_FREE_CONTROLS`). The caller hands it a frame whose
faces are already filled from their context, so no pixel of a face reaches any network.

>>> pipe = CamouflageBasePipeline.from_manifest(ModelResolver(models_dir="models"))  # doctest: +SKIP
>>> out = pipe(image, controls, prompt="a woman in a room", generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DiffusionPipeline,
    DPMSolverSDEScheduler,
    UNet2DConditionModel,
)
from diffusers.image_processor import VaeImageProcessor
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from streamer.errors import ConfigError, ModelError

from ..device import brownian_seed
from ..guidance import classifier_free_guidance, identity_guidance
from ..masked import as_mask, at_resolution, keep_context, masked_start
from ..models.names import BASE_MODELS, CONTROLS, IDF
from ..schedulers import SCHEDULERS
from ..speed import decode_latents, encode_latents

DEFAULT_SCALES = {"depth": 0.5, "normal": 0.3, "seg": 0.5, "pose": 1.0, "lineart": 0.5}
# identity-blind: these act outside the faces only (their residuals are cut inside); the pose
# (body keypoints + the detector's 5 landmarks) is the one control that reaches the face
FACE_FREE_CONTROLS = ("depth", "normal", "seg", "lineart")
__all__ = ["BASE_MODELS", "CONTROLS", "FACE_FREE_CONTROLS", "CamouflageBasePipeline", "CamouflageBasePipelineOutput",
           "identity_guidance"]


def make_scheduler(name: str, config: Mapping[str, Any]):  # noqa: ANN201
    try:
        return SCHEDULERS[name](config)
    except KeyError:
        raise ConfigError(f"base.scheduler {name!r}: use one of {', '.join(SCHEDULERS)}") from None


@dataclass
class CamouflageBasePipelineOutput(BaseOutput):
    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    prompts: list[str]


class CamouflageBasePipeline(DiffusionPipeline, StableDiffusionLoraLoaderMixin):
    """Multi-ControlNet img2img with identity-function negative guidance (CAMOUFLaGE-Base)."""

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components: list[str] = ["idf_controlnet"]

    def __init__(self, vae: AutoencoderKL, text_encoder, tokenizer, unet: UNet2DConditionModel,  # noqa: ANN001
                 controlnet: MultiControlNetModel | Sequence[ControlNetModel], idf_controlnet: ControlNetModel | None,
                 scheduler) -> None:  # noqa: ANN001
        super().__init__()
        if isinstance(controlnet, (list, tuple)):
            controlnet = MultiControlNetModel(list(controlnet))
        if len(controlnet.nets) != len(CONTROLS):
            raise ValueError(f"CamouflageBasePipeline needs {len(CONTROLS)} ControlNets ({', '.join(CONTROLS)})")
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              controlnet=controlnet, idf_controlnet=idf_controlnet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.control_image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False)

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def from_manifest(cls, resolver, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,  # noqa: ANN001
                      scheduler: str = "dpmpp_sde_karras") -> CamouflageBasePipeline:
        """Load every component through the manifest resolver (safetensors only); the IDF
        ControlNet when the models folder has one."""
        from transformers import CLIPTextModel, CLIPTokenizer

        paths = resolver.resolve_many(BASE_MODELS)
        idf = resolver.find(IDF)
        try:
            sd = paths["sd15"]
            pipe = cls(
                vae=AutoencoderKL.from_pretrained(paths["vae"], use_safetensors=True, torch_dtype=dtype),
                text_encoder=CLIPTextModel.from_pretrained(sd / "text_encoder", use_safetensors=True, dtype=dtype),
                tokenizer=CLIPTokenizer.from_pretrained(sd / "tokenizer"),
                unet=UNet2DConditionModel.from_pretrained(sd / "unet", use_safetensors=True, torch_dtype=dtype),
                controlnet=MultiControlNetModel([
                    ControlNetModel.from_pretrained(paths[f"controlnet_{c}"], use_safetensors=True, torch_dtype=dtype) for c in CONTROLS
                ]),
                idf_controlnet=None if idf is None else ControlNetModel.from_pretrained(idf, use_safetensors=True, torch_dtype=dtype),
                scheduler=make_scheduler(scheduler, DPMSolverSDEScheduler.load_config(sd / "scheduler")),
            )
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken/incompatible checkpoint: one line, exit 5
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise ModelError(f"cannot load CAMOUFLaGE-Base models ({type(exc).__name__}: {first[:200]})") from exc
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)

    # -- pieces of the algorithm ---------------------------------------------------------

    def encode_prompt(self, prompts: list[str], device: torch.device) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(device)
        return self.text_encoder(ids)[0].to(self.unet.dtype)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """The original's VAE latents (posterior mean, scaled): img2img start and IDF condition."""
        image = image.to(device=self._execution_device, dtype=self.vae.dtype)
        return self._encode_latents(image)

    def _encode_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Scaled latents of ``pixels`` in [-1, 1]: the posterior mean (AutoencoderKL) or the
        tiny VAE's encoding (AutoencoderTiny, ``speed.tiny_vae``)."""
        return encode_latents(self.vae, pixels, sample=False)

    def _decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels in about [-1, 1] from scaled latents, with either VAE."""
        return decode_latents(self.vae, latents)

    def get_timesteps(self, num_inference_steps: int, strength: float) -> tuple[torch.Tensor, int]:
        init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
        t_start = max(num_inference_steps - init_timestep, 0)
        timesteps = self.scheduler.timesteps[t_start * self.scheduler.order:]
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(t_start * self.scheduler.order)
        return timesteps, num_inference_steps - t_start

    def _seed_scheduler(self, generator: torch.Generator | None) -> dict[str, Any]:
        """Scheduler noise from ``generator`` too: DPM++ SDE draws its Brownian tree from
        ``noise_sampler_seed`` (random unless set), others take ``generator`` in step()."""
        if hasattr(self.scheduler, "noise_sampler_seed"):
            # one Brownian tree per batch item when given one generator per item
            self.scheduler.noise_sampler_seed = brownian_seed(generator)
            self.scheduler.noise_sampler = None
        if "generator" in inspect.signature(self.scheduler.step).parameters:
            return {"generator": generator}
        return {}

    @staticmethod
    def _as_pil(images):  # noqa: ANN001, ANN205
        """uint8 arrays -> PIL (VaeImageProcessor reads numpy input as floats in [0, 1])."""
        if isinstance(images, np.ndarray) and images.dtype == np.uint8:
            return [PIL.Image.fromarray(i) for i in images] if images.ndim == 4 else PIL.Image.fromarray(images)
        if isinstance(images, list):
            return [PIL.Image.fromarray(i) if isinstance(i, np.ndarray) and i.dtype == np.uint8 else i for i in images]
        return images

    def control_scales(self, scales: Mapping[str, float], step: int, total: int, lineart_stop: float) -> list[float]:
        """Per-ControlNet conditioning scales at ``step``: lineart is 0 from ``lineart_stop`` on."""
        out = [float(scales[c]) for c in CONTROLS]
        if step >= lineart_stop * total:
            out[CONTROLS.index("lineart")] = 0.0
        return out

    # -- the algorithm ----------------------------------------------------------------------

    def controlnet_residuals(self, sample: torch.Tensor, t: torch.Tensor, text: torch.Tensor, controls: list[torch.Tensor],
                             scales: list[float], face: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The five ControlNets' summed residuals (what MultiControlNetModel gives), skipping
        every net whose scale is 0 (lineart after ``lineart_stop``: it would add exactly
        nothing). ``face`` (B, 1, H, W: 1 on the faces): the residuals of
        :data:`FACE_FREE_CONTROLS` are cut to 0 there, so only the pose reaches the face."""
        down = mid = None
        for control, cond, scale, net in zip(CONTROLS, controls, scales, self.controlnet.nets, strict=True):
            if scale == 0.0:
                continue
            d, m = net(sample, t, encoder_hidden_states=text, controlnet_cond=cond, conditioning_scale=scale, return_dict=False)
            if face is not None and control in FACE_FREE_CONTROLS:  # 0 in every cell a face touches
                d = [r * (1 - at_resolution(face, r)) for r in d]
                m = m * (1 - at_resolution(face, m))
            down = d if down is None else [a + b for a, b in zip(down, d, strict=True)]
            mid = m if mid is None else mid + m
        if down is None:  # every scale 0: the U-Net alone
            return None, None
        return down, mid

    @torch.no_grad()
    def __call__(
        self,
        image: PIL.Image.Image | np.ndarray | torch.Tensor | list,
        control_images: Mapping[str, PIL.Image.Image | np.ndarray | torch.Tensor],
        prompt: str | list[str] = "",
        negative_prompt: str | list[str] = "",
        num_inference_steps: int = 25,
        strength: float = 0.75,
        anonymization_scale: float = 1.25,
        guidance_scale: float = 7.5,
        controlnet_conditioning_scale: Mapping[str, float] | None = None,
        lineart_stop: float = 0.5,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        mask_image: np.ndarray | torch.Tensor | None = None,
        callback_on_step_end: Callable[[CamouflageBasePipeline, int, torch.Tensor, dict[str, Any]], None] | None = None,
    ) -> CamouflageBasePipelineOutput:
        """``mask_image`` (B, H, W) or (H, W) in [0, 1], 1 where the face is: the identity-blind
        path (camouflage/blind.py). The masked area starts from pure noise (strength 1,
        ``strength`` is not used), the rest is re-imposed from ``image``'s latents at every
        step, and depth/normal/seg/lineart act outside the mask only. Without it: the
        paper's img2img at ``strength`` with the IDF branch."""
        device = self._execution_device
        scales = {**DEFAULT_SCALES, **(controlnet_conditioning_scale or {})}
        if set(scales) != set(CONTROLS):
            raise ValueError(f"controlnet_conditioning_scale: unknown control(s) {', '.join(sorted(set(scales) - set(CONTROLS)))}")
        missing = [c for c in CONTROLS if c not in control_images]
        if missing:
            raise ValueError(f"control images missing: {', '.join(missing)}")
        use_idf = anonymization_scale != 1.0
        if use_idf and mask_image is not None:
            raise ValueError("the identity-blind path (mask_image) has no original to guide away from: use anonymization_scale 1.0")
        if use_idf and self.idf_controlnet is None:
            raise ValueError(f"anonymization_scale {anonymization_scale} needs the IDF ControlNet (none loaded: use 1.0)")

        # 1. the image, its latents (img2img start or, blind, the context; the IDF condition), the controls
        original = self.image_processor.preprocess(self._as_pil(image))
        batch, _, height, width = original.shape
        prompts = [prompt] * batch if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt] * batch if isinstance(negative_prompt, str) else list(negative_prompt)
        init_latents = self.encode_image(original)
        idf_condition = init_latents.to(self.unet.dtype)
        controls = [
            self.control_image_processor.preprocess(self._as_pil(control_images[c]), height=height, width=width).to(device, self.unet.dtype)
            for c in CONTROLS
        ]
        masked = mask_image is not None
        if masked:  # 1 where the face is, at pixel and at latent resolution (a latent cell touching it is the face's)
            face = as_mask(mask_image, batch, device)
            latent_face = at_resolution(face, init_latents)

        # 2. text: [negative, caption] for CFG on the positive branch; the IDF branch uses the caption
        do_cfg = guidance_scale > 1.0
        text = self.encode_prompt(prompts, device)
        positive_text = torch.cat([self.encode_prompt(negatives, device), text]) if do_cfg else text
        n_pos = 2 if do_cfg else 1
        controls = [c.repeat(n_pos, 1, 1, 1) for c in controls]
        face_pos = face.repeat(n_pos, 1, 1, 1) if masked else None

        # 3. timesteps and the start: img2img noised to ``strength``, or (blind) the face from pure
        # noise and the context at the first timestep's noise level
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps, num_inference_steps = self.get_timesteps(num_inference_steps, 1.0 if masked else strength)
        extra_step_kwargs = self._seed_scheduler(generator)
        noise = randn_tensor(init_latents.shape, generator=generator, device=device, dtype=init_latents.dtype)
        if masked:
            latents = masked_start(self.scheduler, init_latents, noise, timesteps[:1].repeat(batch), latent_face)
        else:
            latents = self.scheduler.add_noise(init_latents, noise, timesteps[:1].repeat(batch))

        # 4. denoising loop
        for i, t in enumerate(timesteps):
            x = self.scheduler.scale_model_input(latents, t).to(self.unet.dtype)
            x_pos = x.repeat(n_pos, 1, 1, 1)
            step_scales = self.control_scales(scales, i, len(timesteps), lineart_stop)
            down, mid = self.controlnet_residuals(x_pos, t, positive_text, controls, step_scales, face_pos)
            sample, hidden = x_pos, positive_text
            if use_idf:
                down_idf, mid_idf = self.idf_controlnet(x, t, encoder_hidden_states=text, controlnet_cond=idf_condition,
                                                        conditioning_scale=1.0, return_dict=False)
                down = down_idf if down is None else [torch.cat([p, q]) for p, q in zip(down, down_idf, strict=True)]
                mid = mid_idf if mid is None else torch.cat([mid, mid_idf])
                sample, hidden = torch.cat([x_pos, x]), torch.cat([positive_text, text])
            # one UNet call for all branches: [negative+controls, caption+controls, caption+IDF]
            eps = self.unet(sample, t, encoder_hidden_states=hidden, down_block_additional_residuals=down,
                            mid_block_additional_residual=mid, return_dict=False)[0]
            eps_idf = eps[-batch:] if use_idf else None
            if do_cfg:
                eps_pos = classifier_free_guidance(eps[:batch], eps[batch:2 * batch], guidance_scale)
            else:
                eps_pos = eps[:batch]
            noise_pred = identity_guidance(eps_pos, eps_idf, anonymization_scale) if use_idf else eps_pos
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {"latents": latents, "model_input": x, "eps_pos": eps_pos, "eps_idf": eps_idf,
                                                  "noise_pred": noise_pred, "control_scales": step_scales})
            latents = self.scheduler.step(noise_pred.to(latents.dtype), t, latents, **extra_step_kwargs, return_dict=False)[0]
            if masked:  # the context back at the next step's noise level
                following = timesteps[i + 1:i + 2].repeat(batch) if i < len(timesteps) - 1 else None
                latents = keep_context(self.scheduler, latents, init_latents, noise, following, latent_face)

        # 5. decode
        if output_type == "latent":
            return CamouflageBasePipelineOutput(images=latents, prompts=prompts)
        decoded = self._decode_latents(latents)
        images = self.image_processor.postprocess(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        return CamouflageBasePipelineOutput(images=images, prompts=prompts)


