"""CAMOUFLaGE (arXiv 2403.14790) as diffusers pipelines: model manifest and loading,
annotators, Base (multi-ControlNet + IDF negative guidance), Light, training."""
