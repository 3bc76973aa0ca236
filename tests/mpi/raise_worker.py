"""Run under `mpiexec -n 2`: rank 1 raises while rank 0 waits for it in a collective.

Without the abort, rank 0 would wait in barrier() forever; the test checks that
the job ends within seconds and that the message names the failing rank.
"""
import tinygrad_zh.distributed as dist


def main():
    dist.init_process_group()
    if dist.get_rank() == 1:
        raise ValueError("a deliberate failure on rank 1")
    dist.barrier()
    print("rank 0 passed the barrier: the abort did not happen", flush=True)


if __name__ == "__main__":
    main()
