"""Checking an `image_folder` source before loading: its size, channels, normalisation and classes.

Part of the spec checker (compiler/data_check.py's `DataChecks` builds on
`ImageFolderChecks`). The classes are the names of the root's sub-folders,
listed when the spec is checked (or given as `classes=[...]`, in that order), so
`data.classes` and `data.labels` are known before any picture is read, and the
input is `f32[channels, height, width]` whatever size the files are.
"""

from __future__ import annotations

from dslc.dsl import ast

from .data_files import env_data_root, folder_of, subfolders
from .expr_check import Bail

MAX_SIDE = 8192


class ImageFolderChecks:
    """The image_folder methods of SpecChecker (report and spec_dir come from it)."""

    def image_folder_facts(self, args: dict, call: ast.Call) -> dict:
        size = [args["size"]] if isinstance(args["size"], int) else list(args["size"])
        if len(size) == 1:
            size = [size[0], size[0]]
        if len(size) != 2 or not all(0 < s <= MAX_SIDE for s in size):
            self.report.error(f"size is [height, width], each 1 to {MAX_SIDE}, e.g. size=[32, 32]", call.span)
            raise Bail
        args["size"] = list(size)
        channels = args["channels"]
        for key in ("mean", "std"):
            values = args[key]
            if values is not None and len(values) != channels:
                self.report.error(f"{key} has one number per channel: {channels} here, not {len(values)}", call.span)
                raise Bail
        if (args["mean"] is None) != (args["std"] is None):
            self.report.error("give mean and std together (or neither: pixels are scaled to 0-1)", call.span)
            raise Bail
        if args["std"] is not None and not all(s > 0 for s in args["std"]):
            self.report.error("std must be positive", call.span)
            raise Bail
        classes = args["classes"]
        if classes is not None:
            if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)) \
                    or len(set(classes)) != len(classes):
                self.report.error("classes is a list of different folder names, e.g. classes=[\"cat\", \"dog\"]",
                                  call.span)
                raise Bail
        else:
            folder = folder_of(args["root"], self.spec_dir, env_data_root())
            found = subfolders(folder)
            if isinstance(found, str) or not found:
                why = f"it cannot be listed now ({found})" if isinstance(found, str) else "it has no class folders"
                self.report.error(f"image_folder: the classes are the folders under {args['root']}, but {why}",
                                  call.span, "give them in their order: classes=[\"cat\", \"dog\"], or point root "
                                             "at the folder holding one folder per class")
                raise Bail
            classes = found
        return {"classes": len(classes), "labels": list(classes),
                "_image": {"size": list(size), "channels": channels, "mean": args["mean"], "std": args["std"]}}
