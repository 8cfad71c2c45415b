"""Training the CAMOUFLaGE components (``camstream train``, ``camstream data prepare``).
May import camouflage.models and the inference modules; nothing imports it but its CLI.

  cli.py         ``camstream train NAME`` (the trainers by name) and ``camstream data``
  loop.py        what both trainers share: arguments, frozen SD1.5, the loop, checkpoints
  idf.py         ``camstream train idf``: Base's IDF ControlNet, SD frozen
  light.py       ``camstream train light``: Light's two adapters jointly, SD frozen
  light_args.py  its arguments (torch-free: the parser is built on every call)
  data/          the shards: prepare, the streaming reader, Light's maps painted per batch
"""
