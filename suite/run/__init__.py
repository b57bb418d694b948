"""Running a spec: plan its runs (plan.py), execute each one, training or study, into a record
(execute.py, trainer.py), measure it (measure.py), keep it resumable (checkpoint.py), in this
process (local.py), under torchrun/DDP (distributed.py) or as parallel processes (parallel.py).
allocator.py and storage.py are the CPU memory settings and the bytes a run's tensors hold."""
