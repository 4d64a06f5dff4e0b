"""`python -m ddkit …`: the same command line as `ddkit …`."""

from ddkit.cli import main

if __name__ == "__main__":
    main()
