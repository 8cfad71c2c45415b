"""Scale-out on Ray: many files across a cluster (:mod:`.batch`), many cameras as
supervised actors (:mod:`.serve`), Prometheus metrics (:mod:`.metrics`).

Nothing here imports Ray at module level except the modules that run on it
(``batch``, ``serve``), and those are imported only by ``--ray`` / ``camstream serve``:
a plain ``camstream run`` never loads Ray. Ray and prometheus-client come with the
``camstream[ray]`` extra.
"""
