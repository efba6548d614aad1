"""`python -m losslab ...` is `train ...` (the form torchrun needs: `torchrun -m losslab ...`)."""

from losslab.cli import train_script

if __name__ == "__main__":
    train_script()
