"""The end-to-end demo (`realsr demo`): the job (:mod:`.pipeline`), its adapted model (:mod:`.adapted`),
the records the job and its report share (:mod:`.records`) and the report's sections (:mod:`.sections`)."""

from realsr_fast.kernel_estimation import ITERATIONS

# The demo's defaults live here, in the light package `__init__`, so that `realsr demo --help` shows
# them without importing torch; `demo.pipeline` imports them from here.
DEMO_ITERATIONS = ITERATIONS
"""KernelGAN iterations per sample photo: the official setting."""
ADAPT_ITERATIONS = 60
"""Default fine-tuning iterations of the demo's adapted column (48 px crops x 2): chosen where the
held-out gain levels off; its time and gain are measured in docs/adapt.md."""
