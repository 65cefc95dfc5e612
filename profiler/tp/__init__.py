"""Tensor-parallel prefill: K ranks on torch.distributed, each profiled, merged into one run folder.

launch (the parent: checks, torch.distributed's elastic launcher) -> rank (one process per rank:
build, shard, profile, gather to rank 0) -> folder (rank 0 writes the run folder: per-rank runs,
tp.json, one merged trace). Collectives are timed by profiler.collectives inside `instrument`.
"""
