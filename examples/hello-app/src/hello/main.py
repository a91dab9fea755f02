"""A tiny app for the pexinit demo: says hello and where its cache lives."""

import os
import sys


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "world"
    print(f"hello, {name}! (HOME={os.environ.get('HOME')})")


if __name__ == "__main__":
    main()
