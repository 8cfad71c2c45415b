"""CamouflageLightPipeline: img2img on a frozen SD1.5 with an IP-Adapter for the identity and
a spatial control for the pose, guided as IP-Adapter is used, plus negative identity
guidance. Two sets of adapters:

* ``camouflage`` (trained by ``camstream train light``): the IP-Adapter fed FaRL's projected
  embedding, the 41-channel T2I-Adapter on the FACER attribute/keypoint map;
* ``public`` (no training): h94's IP-Adapter plus-face SD1.5 fed the penultimate hidden states
  of its CLIP ViT-H/14 image encoder, and the openpose ControlNet (Base's) on the pose image.

The loop (``__call__``), top to bottom:
  1. the branches of a step, all in one batched U-Net call:
         uncond: the negative prompt, the IP-Adapter's zero-image input   (guidance_scale > 1)
         cond:   the prompt (a face prompt), the *target* identity        (always)
         push:   the prompt, the *original* face's own embedding          (anonymization_scale != 1)
  2. the start: the image's latents noised to ``strength``; identity-blind (``mask_image``)
     the face from pure noise and the context re-imposed at every step,
  3. the T2I-Adapter once on the attribute map (its residuals are the same at every step),
  4. denoise with :mod:`camouflage.guidance`:
         eps_pos = eps_uncond + g * (eps_cond - eps_uncond)
         eps     = eps_push + a_s * (eps_pos - eps_push)
     as Base mixes its IDF branch: a_s = 0 follows the original identity, 1 the target,
     > 1 pushes further away from the original,
  5. VAE-decode.
U-Net branches per step: 1 + CFG + push (:func:`camouflage.guidance.unet_branches`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverSDEScheduler,
    T2IAdapter,
    UNet2DConditionModel,
)
from diffusers.loaders import IPAdapterMixin, StableDiffusionLoraLoaderMixin
from diffusers.utils import BaseOutput
from diffusers.utils import logging as diffusers_logging
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

from streamer.errors import ConfigError, ModelError

from ..device import brownian_seed
from ..guidance import classifier_free_guidance, identity_guidance
from ..masked import as_mask, at_resolution, keep_context, masked_start
from ..models import names
from ..models.adapters import load_ip_adapter_file
from ..schedulers import SCHEDULERS
from ..speed import decode_latents, encode_latents
from .attributes import CLIP_MEAN, CLIP_STD


def make_scheduler(name: str, config: dict):
    if name not in SCHEDULERS:
        raise ConfigError(f"light.scheduler: {name!r} is not one of {', '.join(SCHEDULERS)}")
    return SCHEDULERS[name](config)


def _sd15_components(paths: dict[str, Path], scheduler: str, dtype: torch.dtype) -> dict[str, Any]:
    """The frozen SD1.5 parts both adapter sets run on, from local files: the pipeline's
    ``vae``, ``text_encoder``, ``tokenizer``, ``unet`` and ``scheduler``."""
    sd = paths[names.SD15]
    kw = {"local_files_only": True, "torch_dtype": dtype}  # diffusers
    return {
        "vae": AutoencoderKL.from_pretrained(paths[names.VAE], **kw),
        "text_encoder": CLIPTextModel.from_pretrained(sd / "text_encoder", local_files_only=True, dtype=dtype),  # transformers 5
        "tokenizer": CLIPTokenizer.from_pretrained(sd / "tokenizer"),
        "unet": UNet2DConditionModel.from_pretrained(sd / "unet", **kw),
        "scheduler": make_scheduler(scheduler, DDIMScheduler.load_config(sd / "scheduler")),
    }


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers' warnings off for a while: ``load_ip_adapter``'s own UNet.to(dtype) warns of
    fp32 modules the UNet has none of."""
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity)


@dataclass
class LightPipelineOutput(BaseOutput):
    images: np.ndarray | torch.Tensor  # (B, H, W, 3) float in [0, 1] ("np") or (B, 3, H, W) ("pt")


def _to_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] from uint8 HWC / BHWC arrays or a float tensor."""
    if isinstance(image, torch.Tensor):
        return image if image.ndim == 4 else image[None]
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[None]
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255.0


class CamouflageLightPipeline(DiffusionPipeline, IPAdapterMixin, StableDiffusionLoraLoaderMixin):
    """CAMOUFLaGE-Light as a diffusers pipeline.

    Example::

        pipe = CamouflageLightPipeline.from_models_dir("models/")
        out = pipe(image, attribute_map, identity_embeds=target, original_embeds=own,
                   anonymization_scale=1.25, generator=torch.Generator().manual_seed(0))
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->adapter->unet->vae"
    _optional_components = ["image_encoder", "feature_extractor"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler,
        adapter: T2IAdapter | None = None,
        image_encoder: CLIPVisionModelWithProjection | None = None,
        feature_extractor=None,
        controlnet: ControlNetModel | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            adapter=adapter, image_encoder=image_encoder, feature_extractor=feature_extractor, controlnet=controlnet,
        )
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def adapters(self) -> str:
        """``camouflage`` (T2I-Adapter + FaRL IP-Adapter) or ``public`` (ControlNet + IP-Adapter plus)."""
        return "public" if self.controlnet is not None else "camouflage"

    @property
    def identity_from_hidden_states(self) -> bool:
        """IP-Adapter plus reads the encoder's penultimate hidden states, not its projection."""
        proj = self.unet.encoder_hid_proj.image_projection_layers[0]
        return not hasattr(proj, "image_embeds")

    @property
    def size_multiple(self) -> int:
        """Generated sizes must be multiples of this (64 for SD1.5: VAE 8 x U-Net/adapter 8)."""
        unet = self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        return max(unet, self.adapter.total_downscale_factor if self.adapter is not None else 1)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_models_dir(
        cls,
        models_dir: str | Path | None,
        scheduler: str = "dpmpp_sde_karras",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        offline: bool | None = None,
    ) -> CamouflageLightPipeline:
        """sd15 + vae + Light's adapters + FaRL, each resolved through the manifest."""
        paths = names.resolve_models(
            models_dir, (names.SD15, names.VAE, names.FARL, names.IP_ADAPTER, names.T2I_ADAPTER), offline)
        return cls.from_paths(paths, scheduler, device, dtype)

    @classmethod
    def from_paths(
        cls,
        paths: dict[str, Path],
        scheduler: str = "dpmpp_sde_karras",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> CamouflageLightPipeline:
        """Load from resolved folders (``names.resolve_models``)."""
        kw = {"local_files_only": True, "torch_dtype": dtype}  # diffusers
        tkw = {"local_files_only": True, "dtype": dtype}  # transformers 5
        try:
            pipe = cls(
                **_sd15_components(paths, scheduler, dtype),
                adapter=T2IAdapter.from_pretrained(paths[names.T2I_ADAPTER], **kw),
                image_encoder=CLIPVisionModelWithProjection.from_pretrained(paths[names.FARL], **tkw),
            )
            weights = load_ip_adapter_file(paths[names.IP_ADAPTER] / names.IP_ADAPTER_WEIGHTS)
            with _quiet_diffusers():
                pipe.load_ip_adapter(weights, subfolder="", weight_name="", image_encoder_folder=None)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"CAMOUFLaGE-Light: cannot load models ({str(exc).splitlines()[0]})") from None
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)

    @classmethod
    def from_public_paths(
        cls,
        paths: dict[str, Path],
        scheduler: str = "dpmpp_sde_karras",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        controlnet: ControlNetModel | None = None,
    ) -> CamouflageLightPipeline:
        """sd15 + vae + h94's IP-Adapter plus-face (with its CLIP ViT-H encoder, read from the
        repo's own layout) + the openpose ControlNet (``controlnet``, e.g. Base's, or loaded
        from ``paths[controlnet_pose]``)."""
        kw = {"local_files_only": True, "torch_dtype": dtype}
        try:
            pipe = cls(
                **_sd15_components(paths, scheduler, dtype),
                controlnet=controlnet or ControlNetModel.from_pretrained(paths[names.POSE_CONTROLNET], use_safetensors=True, **kw),
            )
            with _quiet_diffusers():
                pipe.load_ip_adapter(str(paths[names.IP_ADAPTER_PLUS]), subfolder=names.IP_ADAPTER_PLUS_SUBFOLDER,
                                     weight_name=names.IP_ADAPTER_PLUS_WEIGHTS,
                                     image_encoder_folder=names.IP_ADAPTER_PLUS_ENCODER, local_files_only=True,
                                     torch_dtype=dtype)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"Light with public adapters: cannot load models ({str(exc).splitlines()[0]})") from None
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)

    # ------------------------------------------------------------------ pieces
    def encode_prompt(self, prompt: str | list[str], batch: int) -> torch.Tensor:
        prompts = [prompt] * batch if isinstance(prompt, str) else list(prompt)
        if torch.is_grad_enabled():  # training: the text encoder may be changing
            return self._encode_text(prompts)
        # video asks for the same few prompts every frame: encode each once
        cache = self.__dict__.setdefault("_prompt_cache", {})
        device = self.text_encoder.device
        missing = [t for t in dict.fromkeys(prompts) if (t, device) not in cache]
        if missing:
            if len(cache) + len(missing) > 64:
                cache.clear()
            cache.update({(t, device): e for t, e in zip(missing, self._encode_text(missing), strict=True)})
        return torch.stack([cache[t, device] for t in prompts])

    def _encode_text(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.text_encoder.device))[0]

    def encode_identity(self, images: torch.Tensor) -> torch.Tensor:
        """Identity embeddings of (B, 3, H, W) [0, 1] images (already face crops)."""
        if self.image_encoder is None:
            raise ModelError("CAMOUFLaGE-Light: no image encoder loaded")
        size = self.image_encoder.config.image_size
        x = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return self.identity_embeddings(x)

    def identity_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        """What the installed IP-Adapter takes for CLIP-normalised crops at the encoder's size:
        the projected embedding (B, D), or for IP-Adapter plus the penultimate hidden states (B, T, D)."""
        p = next(self.image_encoder.parameters())
        with torch.no_grad():
            out = self.image_encoder(pixel_values=pixels.to(p.device, p.dtype),
                                     output_hidden_states=self.identity_from_hidden_states)
        return out.hidden_states[-2] if self.identity_from_hidden_states else out.image_embeds

    def get_timesteps(self, steps: int, strength: float) -> torch.Tensor:
        self.scheduler.set_timesteps(steps, device=self._execution_device)
        init = min(int(steps * strength), steps)
        t_start = max(steps - init, 0)
        timesteps = self.scheduler.timesteps[t_start * self.scheduler.order:]
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(t_start * self.scheduler.order)
        return timesteps

    def _encode_latents(self, pixels: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None) -> torch.Tensor:
        """Scaled latents of ``pixels`` in [-1, 1]: a posterior sample drawn from ``generator``
        (AutoencoderKL) or the tiny VAE's encoding (AutoencoderTiny, ``speed.tiny_vae``)."""
        return encode_latents(self.vae, pixels, generator)

    def _decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels in about [-1, 1] from scaled latents, with either VAE."""
        return decode_latents(self.vae, latents)

    def predict_noise(self, latents, t, text, identity, residuals, control=None, control_scale=1.0) -> torch.Tensor:  # noqa: ANN001
        """One U-Net call (after the ControlNet's, when ``control`` is given); T2I ``residuals``
        are copied because the U-Net pops from the list."""
        extra = {}
        if residuals is not None:
            extra["down_intrablock_additional_residuals"] = [r.clone() for r in residuals]
        if control is not None:
            down, mid = self.controlnet(latents, t, encoder_hidden_states=text, controlnet_cond=control,
                                        conditioning_scale=control_scale, return_dict=False)
            extra |= {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        return self.unet(latents, t, encoder_hidden_states=text, added_cond_kwargs={"image_embeds": [identity[:, None]]},
                         **extra).sample

    # ------------------------------------------------------------------ the algorithm
    def unconditional_identity(self, batch: int) -> torch.Tensor:
        """The IP-Adapter's unconditional input, as diffusers builds it (``encode_image``):
        zeros for a projected embedding; for IP-Adapter plus the encoder's penultimate hidden
        states of an all-zero (normalised) image. What the adapter was trained on for a
        dropped image condition."""
        p = next(self.image_encoder.parameters())
        key = (p.device, p.dtype)
        cache = self.__dict__.setdefault("_uncond_identity", {})
        if key not in cache:
            size = self.image_encoder.config.image_size
            zeros = torch.zeros(1, 3, size, size, device=p.device, dtype=p.dtype)
            with torch.no_grad():
                if self.identity_from_hidden_states:
                    cache[key] = self.image_encoder(pixel_values=zeros, output_hidden_states=True).hidden_states[-2]
                else:
                    cache[key] = torch.zeros_like(self.image_encoder(pixel_values=zeros).image_embeds)
        return cache[key].expand(batch, *cache[key].shape[1:])

    @torch.no_grad()
    def __call__(
        self,
        image: np.ndarray | torch.Tensor,
        attribute_map: np.ndarray | torch.Tensor | None = None,
        prompt: str | list[str] = "",
        identity_embeds: torch.Tensor | None = None,
        original_embeds: torch.Tensor | None = None,
        strength: float = 0.75,
        num_inference_steps: int = 25,
        anonymization_scale: float = 1.0,
        adapter_conditioning_scale: float = 1.0,
        ip_adapter_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
        control_image: np.ndarray | torch.Tensor | None = None,
        controlnet_conditioning_scale: float = 1.0,
        negative_prompt: str | list[str] = "",
        guidance_scale: float = 1.0,
        mask_image: np.ndarray | torch.Tensor | None = None,
    ) -> LightPipelineOutput:
        """``attribute_map`` (B, 41, H, W) feeds the T2I-Adapter (camouflage adapters);
        ``control_image`` (B, H, W, 3 uint8, e.g. an openpose drawing) the ControlNet (public).

        Guidance (:mod:`camouflage.guidance`): with ``guidance_scale`` > 1 text CFG, the
        unconditional branch being ``negative_prompt`` with the IP-Adapter's zero-image
        input (as IP-Adapter is trained and used); with ``anonymization_scale`` != 1 the
        identity push on top, its negative branch the IP-Adapter fed ``original_embeds``.
        ``identity_embeds`` None: the zero-image input (no target yet).
        ``mask_image`` (B, H, W), 1 on the face: identity-blind, as in Base's pipeline (the
        face from pure noise, the context re-imposed each step; ``strength`` unused)."""
        device, dtype = self._execution_device, self.unet.dtype
        pixels = _to_tensor(image).to(device)
        batch, _, height, width = pixels.shape
        multiple = self.size_multiple
        if height % multiple or width % multiple:
            raise ValueError(f"image size {width}x{height} must be a multiple of {multiple}")
        if (self.adapter is None) != (attribute_map is None) or (self.controlnet is None) != (control_image is None):
            raise ValueError("give attribute_map for a T2I-Adapter and control_image for a ControlNet, as loaded")
        if ip_adapter_scale is not None:
            self.set_ip_adapter_scale(ip_adapter_scale)
        do_cfg = guidance_scale > 1.0
        push = anonymization_scale != 1.0
        if push and original_embeds is None:  # the face in ``image`` is the original
            original_embeds = self.encode_identity(pixels)

        # 1. the branches: [negative prompt + zero image] (CFG), [prompt + target], [prompt + original] (push)
        text = self.encode_prompt(prompt, batch).to(dtype)
        identity = (self.unconditional_identity(batch) if identity_embeds is None else identity_embeds).to(device, dtype)
        texts, identities = [text], [identity]
        if do_cfg:
            texts.insert(0, self.encode_prompt(negative_prompt, batch).to(dtype))
            identities.insert(0, self.unconditional_identity(batch).to(device, dtype))
        if push:
            texts.append(text)
            identities.append(original_embeds.to(device, dtype))
        branches = len(texts)
        text_all, identity_all = torch.cat(texts), torch.cat(identities)

        # 2. the start: img2img noised to ``strength``; blind: the face from pure noise
        masked = mask_image is not None
        timesteps = self.get_timesteps(num_inference_steps, 1.0 if masked else strength)
        init = self._encode_latents(pixels * 2 - 1, generator).to(dtype)
        noise = randn_tensor(init.shape, generator=generator, device=device, dtype=dtype)
        if masked:
            latent_face = at_resolution(as_mask(mask_image, batch, device), init)
            latents = masked_start(self.scheduler, init, noise, timesteps[:1], latent_face)
        else:
            latents = self.scheduler.add_noise(init, noise, timesteps[:1])
        if isinstance(self.scheduler, DPMSolverSDEScheduler):
            # Its Brownian tree draws its seed from the global RNG unless told: take it from ours.
            # A list of generators (one per batch item) gives one Brownian tree per item, so an
            # item's result does not depend on what else is in the batch.
            self.scheduler.noise_sampler = None
            self.scheduler.noise_sampler_seed = brownian_seed(generator)
        # ancestral / SDE multistep schedulers draw step noise: from our generator too
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}

        # 3. the attribute/keypoint residuals, once (T2I-Adapter); the pose image (ControlNet)
        residuals = control = None
        if self.adapter is not None:
            cond = torch.as_tensor(np.asarray(attribute_map) if not isinstance(attribute_map, torch.Tensor)
                                   else attribute_map)
            cond = (cond if cond.ndim == 4 else cond[None]).to(device, self.adapter.dtype)
            residuals = [(f * adapter_conditioning_scale).to(dtype).repeat(branches, 1, 1, 1) for f in self.adapter(cond)]
        if self.controlnet is not None:
            control = _to_tensor(control_image).to(device, dtype)
            if control.shape[-2:] != (height, width):
                control = F.interpolate(control, size=(height, width), mode="bilinear", align_corners=False)
            control = control.repeat(branches, 1, 1, 1)

        # 4. denoise: every branch in one U-Net call
        for i, t in enumerate(self.progress_bar(timesteps)):
            model_in = self.scheduler.scale_model_input(latents, t)
            eps = self.predict_noise(model_in.repeat(branches, 1, 1, 1), t, text_all, identity_all, residuals, control,
                                     controlnet_conditioning_scale).chunk(branches)
            eps_pos = classifier_free_guidance(eps[0], eps[1], guidance_scale) if do_cfg else eps[0]
            # negative identity guidance: away from the original face's own embedding
            eps_pos = identity_guidance(eps_pos, eps[-1], anonymization_scale) if push else eps_pos
            latents = self.scheduler.step(eps_pos, t, latents, **step_kwargs).prev_sample
            if masked:  # the context back at the next step's noise level
                following = timesteps[i + 1:i + 2] if i < len(timesteps) - 1 else None
                latents = keep_context(self.scheduler, latents, init, noise, following, latent_face)
        # 5. decode
        decoded = self._decode_latents(latents)
        images = (decoded.float() / 2 + 0.5).clamp(0, 1)
        self.maybe_free_model_hooks()
        if output_type == "pt":
            return LightPipelineOutput(images=images)
        return LightPipelineOutput(images=images.permute(0, 2, 3, 1).cpu().numpy())

