"""Light's models by manifest name (configs/models.yaml, section ``light``, plus the
shared ``sd15`` and ``vae``), resolved by :class:`camouflage.manifest.ModelResolver`:
``--models-dir DIR/<name>``, then the HF cache, then the hub unless offline. A missing
model is one :class:`~streamer.errors.ModelError` line naming all of them.
"""

from __future__ import annotations

from pathlib import Path

SD15 = "sd15"
VAE = "vae"
FARL = "farl"
FACER_ATTRIBUTES = "facer_attributes"
IP_ADAPTER = "ip_adapter_light"
T2I_ADAPTER = "t2i_adapter_light"
LIGHT_MODELS = (SD15, VAE, FARL, FACER_ATTRIBUTES, IP_ADAPTER, T2I_ADAPTER)

IP_ADAPTER_WEIGHTS = "ip-adapter_light.safetensors"


def resolve_models(models_dir: str | Path | None, names=LIGHT_MODELS, offline: bool | None = None) -> dict[str, Path]:  # noqa: ANN001
    """``{name: folder}`` for ``names``; raises ModelError (exit code 5) naming every missing one."""
    from camouflage.manifest import ModelResolver

    resolver = ModelResolver(models_dir=models_dir, offline=offline)
    paths = resolver.resolve_many(names)
    resolver.warn_if_random()
    return paths
