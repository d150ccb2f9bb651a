# Copyright: (c) 2026, xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""Controller side of xpu.parallelcluster.infra_stack: hand the module its template text.

For ``state: present`` the module needs the template body. This plugin reads it on the
controller, from the user's ``template`` (found like ``ansible.builtin.copy``'s ``src``: role
``files/``, the playbook directory) or else from the template shipped in the collection
(``files/cloudformation/infra.yaml``, located relative to this file), and passes the text as the
internal option ``template_body``. Everything else is the module's work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase

MODULE = "xpu.parallelcluster.infra_stack"
# plugins/action/infra_stack.py -> <collection root>/files/cloudformation/infra.yaml
COLLECTION_ROOT = Path(__file__).resolve().parents[2]
COLLECTION_TEMPLATE = COLLECTION_ROOT / "files" / "cloudformation" / "infra.yaml"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if args.get("state", "present") == "present" and args.get("template_body") is None:
            given = args.pop("template", None)
            path = Path(self._find_template(given)) if given else COLLECTION_TEMPLATE
            try:
                args["template_body"] = path.read_text(encoding="utf-8")
            except OSError as err:
                raise AnsibleActionFail(
                    f"cannot read the CloudFormation template {path}: {err.strerror}"
                ) from err
        result.update(
            self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        )
        return result

    def _find_template(self, given: str) -> str:
        try:
            return self._find_needle("files", given)
        except AnsibleError as err:
            raise AnsibleActionFail(f"template {given}: {err}") from err
