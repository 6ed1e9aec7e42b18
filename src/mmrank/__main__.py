"""`python -m mmrank ...` (and `torchrun -m mmrank train ...`) run the CLI."""

from mmrank.cli import main

if __name__ == "__main__":
    main()
