"""The `hansard-hf` command line."""

import argparse
import sys

from . import hub


def _export(args):
    out = hub.export_to_nanochat(args.checkpoint, args.out_dir, overwrite=args.overwrite)
    print(f"wrote native NanoChat checkpoint to {out} (load with AutoModelForCausalLM, no trust_remote_code)")


def _import_nanochat(args):
    out = hub.import_from_nanochat(args.checkpoint, args.out_dir, overwrite=args.overwrite)
    print(f"wrote HansardGPT checkpoint to {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hansard-hf", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="HansardGPT checkpoint -> transformers' native NanoChat folder")
    export.add_argument("checkpoint", help="folder or Hub id of a HansardGPT checkpoint")
    export.add_argument("out_dir", help="folder to write the NanoChat checkpoint to")
    export.add_argument("--overwrite", action="store_true", help="replace out_dir if it exists")
    export.set_defaults(func=_export)

    imp = commands.add_parser("import-nanochat", help="native NanoChat checkpoint -> HansardGPT folder")
    imp.add_argument("checkpoint", help="folder or Hub id of a NanoChatForCausalLM checkpoint")
    imp.add_argument("out_dir", help="folder to write the HansardGPT checkpoint to")
    imp.add_argument("--overwrite", action="store_true", help="replace out_dir if it exists")
    imp.set_defaults(func=_import_nanochat)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileExistsError, FileNotFoundError, OSError, ValueError) as error:
        print(f"hansard-hf {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
