"""``seqlab export RUN --onnx FILE``: a run's inference graphs as ONNX files, with a dynamic
batch and length; each family says which graphs (:meth:`seqlab.families.base.Family.exporter`).
Registered in :data:`seqlab.cli.COMMANDS`."""

from __future__ import annotations

import argparse


def add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory written by seqlab train")
    p.add_argument("--onnx", metavar="FILE", required=True,
                   help="the ONNX file to write (its folder must exist); an encoder-decoder "
                        "writes two, FILE's stem + -encoder.onnx and -decoder.onnx")


def run_export(args: argparse.Namespace) -> int:
    from seqlab.export import export, require
    from seqlab.families import runner

    require()  # before loading anything: the missing extra is the first thing to say
    loaded = runner.load_run(args.run, "cpu")
    for written in export(loaded.family.exporter(loaded), args.onnx):
        inputs = ", ".join(f"{k} {shape(v)}" for k, v in written.inputs.items())
        outputs = ", ".join(f"{k} {shape(v)}" for k, v in written.outputs.items())
        print(f"{written.path}: {inputs} -> {outputs} (onnxruntime matches PyTorch within "
              f"{written.difference:.1g})")
    return 0


def shape(dims: list[int | str]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


EXPORT_COMMAND = {"export": ("write a run's inference graphs as ONNX files (dynamic batch and "
                             "length): a language model's step with its state, an "
                             "encoder-decoder's encoder and decoder step, a classifier, a "
                             "forecaster", add_export, run_export)}
