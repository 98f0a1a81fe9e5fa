"""`python -m app` runs the same command line as the `autotrader` script."""

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
