"""`python -m plmkit ...` runs the CLI, so `torchrun --nproc_per_node N -m plmkit pretrain CONFIG` works."""

from plmkit.cli import main

main()
