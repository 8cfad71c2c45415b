"""Model management: what each entry of configs/models.yaml is, where its files are, how
they are read, written small and checked. Imports nothing from inference (base/, light/,
video/, the shared helpers) or training/ (tests/test_imports.py holds it to that).

  manifest.py        configs/models.yaml: entries, the resolver, fetch, the lock file
  names.py           the manifest names the code refers to (Base's, Light's, speed's)
  methods.py         the methods ``--method`` offers and the models each needs
  annotators.py      Base's annotator and captioner files, read into their publishers' classes
  farl.py, facer.py  FaRL's and FACER's published files
  adapters.py        the trained components' layouts: Light's two adapters, Base's IDF ControlNet
  loaders.py         one loader per manifest ``kind`` (what ``models check`` loads)
  check.py           ``camstream models check|import``
  cli.py             ``camstream models list|fetch|check|import|make-tiny``
  tiny.py            ``make-tiny``: sd15/vae/speed, then tiny_base.py, tiny_light.py, tiny_detectors.py

Importing this package imports neither torch nor diffusers.
"""
