"""The one module importing cdktn (cdktf's maintained fork): turns app.py's `Stack`
descriptions into Terraform JSON, one directory per stack under <outdir>/stacks/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cdktn import (
    App,
    LocalBackend,
    TerraformHclModule,
    TerraformLocal,
    TerraformOutput,
    TerraformStack,
    TerraformVariable,
)

if TYPE_CHECKING:
    from infra.terraform.cdk.app import Stack


def _relative(target: Path, start: Path) -> str:
    rel = Path(os.path.relpath(target, start)).as_posix()
    return rel if rel.startswith("../") else f"./{rel}"


def synth(stacks: list[Stack], outdir: Path, repo: Path) -> None:
    app = App(outdir=str(outdir))
    for spec in stacks:
        stack_dir = outdir / "stacks" / spec.name
        stack = TerraformStack(app, spec.name)
        # State beside the output directory, not in it: re-synthesizing or deleting the output
        # must not lose it (README.md: moving production's to S3).
        LocalBackend(stack, path=f"../../../terraform.{spec.name}.tfstate")
        stack.add_override("terraform.required_version", spec.required_version)
        stack.add_override("terraform.required_providers", spec.required_providers)
        for name, config in spec.providers.items():
            stack.add_override(f"provider.{name}", config)
        # Relative to the stack directory: the output keeps working if checkout and output move
        # together.
        TerraformLocal(
            stack, "repo", f'${{abspath("${{path.root}}/{_relative(repo, stack_dir)}")}}'
        )
        for name, value in spec.locals.items():
            TerraformLocal(stack, name, value)
        for name, config in spec.variables.items():
            TerraformVariable(stack, name, **config)
        for name, module in spec.modules.items():
            TerraformHclModule(
                stack,
                name,
                source=_relative(module.source, stack_dir),
                variables=module.inputs,
                # Use the module in place: no copy into the output, whose sub-modules and
                # templates would have to follow it.
                skip_asset_creation_from_local_modules=True,
            )
        for name, value in spec.outputs.items():
            TerraformOutput(stack, name, value=value)
    app.synth()
