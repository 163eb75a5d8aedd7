"""`accelerate launch --config_file accelerate_fsdp2.yaml ... tests/fsdp_on_cpu.py SCRIPT ARGS`: SCRIPT under
accelerate's own FSDP2, on CPU processes over gloo.

accelerate applies an FSDP config only to a group of accelerator processes (MULTI_GPU, MULTI_NPU, ...), which it
decides when the process state is first made. This marks a group of CPU processes as one (the device stays the CPU,
the backend gloo) and then runs SCRIPT; everything after that is accelerate's and torch's own code: the Trainer's
Accelerator, `fully_shard` by the accelerate config, FSDP checkpoints and the gathered full state dict.
"""

import runpy
import sys

from accelerate import PartialState
from accelerate.utils import DistributedType

make_state = PartialState.__init__


def as_accelerator_group(self, *args, **kwargs):
    make_state(self, *args, **kwargs)
    if self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.MULTI_GPU


if __name__ == "__main__":
    PartialState.__init__ = as_accelerator_group
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
