#!/usr/bin/python
"""Documentation of coinex.chatbot.coinex_chatbot_build: the work is done on the controller by
its action plugin (plugins/action/coinex_chatbot_build.py); this module never runs on a host."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: coinex_chatbot_build
short_description: The controller's app wheel and wheelhouses, checked in-process
description:
  - Used by the coinex_chatbot role's tasks/wheelhouse.yml. An action plugin (the controller).
  - Calls C(cached) of roles/coinex_chatbot/files/build_wheelhouse.py in the controller's process,
    and runs the script only when the app wheel, a wheelhouse or its archive is missing.
options:
  argv:
    description: The controller's Python, the path of build_wheelhouse.py and its options.
    type: list
    elements: str
    required: true
"""

RETURN = r"""
stdout:
  description: The JSON object build_wheelhouse.py prints.
  type: str
  returned: always
in_process:
  description: True when everything was found built and the script did not run.
  type: bool
  returned: always
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={"argv": {"type": "list", "elements": "str", "required": True}}
    )
    module.fail_json(msg="coinex_chatbot_build runs on the controller as an action plugin")


if __name__ == "__main__":
    main()
