"""Training data for CAMOUFLaGE: shards made once, streamed by every training.

  prepare.py  ``camstream data prepare SRC... --output SHARDS/``: face crops of images and
              video frames, their captions and (``--light``) FACER attributes, keypoints and
              FaRL embeddings, written as webdataset tar shards
  shards.py   the shard layout and :class:`ShardStream`, the constant-memory, shuffled,
              per-process and per-worker sharded reader the trainings use
  maps.py     Light's 41-channel attribute maps painted per batch on the training device
"""
