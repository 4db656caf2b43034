"""The production example inventory and the fleet scenario's inventory stay in step (issue 17).

The fleet scenario (molecule/fleet) deploys over ssh as `deploy` with sudo from
molecule/fleet/inventory, which must be inventories/production as a user copies it: the same
groups, the example's group_vars files themselves (links), the same vault variables, with only the
host addresses and the secrets replaced. What the scenario adds for its containers lives in
group_vars/*/scenario.yml files and may not touch the connection, the secrets, or (except the
listed sizes) a value the example sets. No containers: files only.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml

from playbook_runner import ROOT

EXAMPLE = ROOT / "inventories/production"
FLEET = ROOT / "molecule/fleet"
SCENARIO = FLEET / "inventory"
# host vars an inventory entry may carry: its addresses, and the pointer to a vaulted sudo password
HOST_KEYS = {
    "ansible_host",
    "ansible_port",
    "coinex_chatbot_private_address",
    "ansible_become_password",
}
# values of the example that the scenario sizes down for two cores (and why: scenario.yml)
RESIZED = {"coinex_chatbot_uwsgi_processes", "coinex_chatbot_redis_maxmemory"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def groups(inventory: dict) -> dict[str, dict]:
    """Top-level groups of a YAML inventory: name -> {host: vars}."""
    return {
        name: {h: v or {} for h, v in (g.get("hosts") or {}).items()}
        for name, g in inventory.items()
    }


def group_vars_files(inventory_dir: Path) -> set[str]:
    """The group_vars files Ansible reads (not the .example shape, not the generated vault.yml)."""
    return {
        str(p.relative_to(inventory_dir))
        for p in (inventory_dir / "group_vars").rglob("*")
        if p.is_file() and p.suffix in (".yml", ".yaml") and p.name != "vault.yml"
    }


def vault_keys_of_example() -> set[str]:
    text = (EXAMPLE / "group_vars/all/vault.yml.example").read_text()
    return set(re.findall(r"^(vault_\w+):", text, re.M))


def test_same_groups_and_only_addresses_per_host() -> None:
    example, scenario = groups(load(EXAMPLE / "hosts.yml")), groups(load(SCENARIO / "hosts.yml"))
    assert set(scenario) == set(example), (sorted(scenario), sorted(example))
    for name, inv in (("example", example), ("scenario", scenario)):
        for group, hosts in inv.items():
            assert hosts, f"{name}: group {group} has no host"
            for host, hostvars in hosts.items():
                assert set(hostvars) <= HOST_KEYS, (
                    f"{name}: {host} sets {set(hostvars) - HOST_KEYS}"
                )
                assert "coinex_chatbot_private_address" in hostvars, f"{name}: {host}"


def test_the_scenario_inventory_is_the_fleet_platforms() -> None:
    """Every platform is in hosts.yml, in the same groups, at its static address (and back)."""
    molecule = load(FLEET / "molecule.yml")
    scenario = groups(load(SCENARIO / "hosts.yml"))
    in_groups = {(g, h) for g, hosts in scenario.items() for h in hosts}
    address = {h: v["ansible_host"] for hosts in scenario.values() for h, v in hosts.items()}
    platforms = {p["name"]: p for p in molecule["platforms"]}
    assert {(g, p["name"]) for p in platforms.values() for g in p["groups"]} == in_groups
    for name, platform in platforms.items():
        static = [n.get("ipv4_address") for n in platform["networks"]]
        assert static == [address[name]], (
            f"{name}: network address {static}, hosts.yml {address[name]}"
        )
        assert address[name] == scenario_private(scenario, name), name
    # Molecule reads the scenario's inventory, not its own generated group_vars
    assert molecule["provisioner"]["inventory"]["links"] == {
        "hosts": "inventory/hosts.yml", "group_vars": "inventory/group_vars",
    }  # fmt: skip
    assert "group_vars" not in molecule["provisioner"]["inventory"]


def scenario_private(scenario: dict[str, dict], host: str) -> str:
    return next(h[host]["coinex_chatbot_private_address"] for h in scenario.values() if host in h)


def test_group_vars_are_the_example_files_themselves() -> None:
    """Each group_vars file of the example is in the scenario as a link to it, not a copy."""
    example, scenario = group_vars_files(EXAMPLE), group_vars_files(SCENARIO)
    assert example <= scenario, f"missing in the scenario: {sorted(example - scenario)}"
    extra = scenario - example
    assert all(Path(f).name == "scenario.yml" for f in extra), sorted(extra)
    for f in sorted(example):
        link = SCENARIO / f
        assert link.is_symlink() and link.resolve() == (EXAMPLE / f).resolve(), (
            f"molecule/fleet/inventory/{f} must be a link to inventories/production/{f}"
        )


def test_scenario_files_leave_connection_and_secrets_to_the_example() -> None:
    set_by_example: set[str] = set()
    for f in group_vars_files(EXAMPLE):
        set_by_example |= set(load(EXAMPLE / f))
    assert "ansible_user" in set_by_example and "coinex_chatbot_secret_key" in set_by_example
    for f in sorted(group_vars_files(SCENARIO) - group_vars_files(EXAMPLE)):
        keys = set(load(SCENARIO / f))
        assert not {k for k in keys if k.startswith(("ansible_", "vault_"))}, f"{f}: {sorted(keys)}"
        assert not {k for k in keys if re.search(r"password|secret|requirepass", k)}, (
            f"{f}: {sorted(keys)}"
        )
        assert keys & set_by_example <= RESIZED, (
            f"{f} changes {sorted(keys & set_by_example - RESIZED)}"
        )


def test_the_vault_has_the_example_variables() -> None:
    """The scenario's vault is made by scripts/vault (as `make vault` makes a user's) and so holds
    each variable of vault.yml.example; the sudo password is added by the scenario's dependency."""
    example = vault_keys_of_example()
    assert {"vault_coinex_chatbot_secret_key", "vault_coinex_chatbot_redis_password"} <= example
    vault_script = (ROOT / "scripts/vault").read_text()
    assert all(f"{k}: " in vault_script for k in example), sorted(example)
    dependency = (FLEET / "dependency").read_text()
    assert '"$ROOT/scripts/vault" "$inv"' in dependency
    assert (
        "vault_ansible_become_password"
        in (EXAMPLE / "group_vars/all/vault.yml.example").read_text()
    )
    uses = [v for hosts in groups(load(SCENARIO / "hosts.yml")).values() for v in hosts.values()]
    assert {"ansible_become_password": "{{ vault_ansible_become_password }}"}.items() <= next(
        v for v in uses if "ansible_become_password" in v
    ).items()


def test_the_scenario_connects_as_the_repository_config_says() -> None:
    """ssh (not Molecule's Docker connection) with the repository's ssh_args, pipelining and host
    key checking on, plus the scenario's own known_hosts and StrictHostKeyChecking=yes."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "ansible.cfg")
    provisioner = load(FLEET / "molecule.yml")["provisioner"]
    options = provisioner["config_options"]
    assert provisioner["connection_options"] == {"ansible_connection": "ssh"}
    assert cfg.getboolean("defaults", "host_key_checking") is True
    assert options["defaults"]["host_key_checking"] is True
    assert options["ssh_connection"]["pipelining"] is True
    ssh_args = options["ssh_connection"]["ssh_args"]
    assert ssh_args.startswith(cfg.get("ssh_connection", "ssh_args") + " "), ssh_args
    assert "UserKnownHostsFile=${MOLECULE_EPHEMERAL_DIRECTORY}/known_hosts" in ssh_args
    assert "StrictHostKeyChecking=yes" in ssh_args
    assert "StrictHostKeyChecking=no" not in ssh_args
    # the one-line failures of the repository's config (plugins/): the same in the scenario
    defaults = options["defaults"]
    assert defaults["stdout_callback"] == cfg.get("defaults", "stdout_callback")
    assert defaults["vars_plugins_enabled"] == cfg.get("defaults", "vars_plugins_enabled")
