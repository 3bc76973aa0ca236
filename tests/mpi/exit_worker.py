"""Run under `mpiexec -n 2`: rank 1 calls sys.exit(3) in the middle of DDP training,
while rank 0 goes on to the next step and waits for it in an all_reduce.

Python gives SystemExit to no hook, so without the end-of-job handshake of
init_process_group rank 1 would wait in MPI_Finalize and rank 0 in its
all_reduce, forever. The test checks that the job ends within seconds, with a
non-zero status and a message naming rank 1. The first argument is the
exit_timeout in seconds. With ``--uneven`` no rank leaves early, but rank 0
works 0.5 s longer at the end: within the timeout, the job must end cleanly.
"""
import sys
import time

import tinygrad_zh as tg
import tinygrad_zh.distributed as dist
from tinygrad_zh import nn


def main(exit_timeout, uneven):
    dist.init_process_group(exit_timeout=exit_timeout)
    rank = dist.get_rank()
    tg.manual_seed(0)
    model = dist.DistributedDataParallel(nn.Linear(3, 2))
    optimizer = tg.optim.SGD(model.parameters(), lr=0.1)
    for step in range(3):
        if step == 1 and rank == 1 and not uneven:
            print("rank 1 calls sys.exit(3)", flush=True)
            sys.exit(3)
        optimizer.zero_grad()
        model(tg.randn(4, 3)).pow(2).mean().backward()  # the gradients' all_reduce
        optimizer.step()
    if uneven and rank == 0:
        time.sleep(0.5)  # e.g. rank 0 writing a checkpoint alone
    print(f"rank {rank} finished training", flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]), "--uneven" in sys.argv[2:])
