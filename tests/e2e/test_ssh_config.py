"""~/.ssh/config fills in what the inventory leaves unsaid, as it does for ssh."""

from __future__ import annotations


def test_an_alias_resolved_by_ssh_config_is_reached(cli, fleet, tmp_path):
    _, address, port = fleet.hosts[0]
    home = tmp_path / "userhome"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host build-box\n  HostName {address}\n  Port {port}\n  User root\n"
        f"  IdentityFile {fleet.client_key}\n"
    )
    (tmp_path / "aliases.ini").write_text("build-box\n")
    cli.env["HOME"] = str(home)
    play = cli.playbook(
        """
        jobs:
          - name: j
            targets: build-box
            steps: [{run: "echo reached"}]
        """
    )
    proc = cli("run", play, "-i", str(tmp_path / "aliases.ini"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["data"] for r in cli.receive(1)] == ["reached\n"]


def test_the_inventory_wins_over_ssh_config(cli, fleet, tmp_path):
    name, address, _ = fleet.hosts[1]
    home = tmp_path / "userhome"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(f"Host {address}\n  Port 1\n  User nobody\n")
    inventory = fleet.write_inventory(tmp_path / "hosts.ini", names=[name])
    cli.env["HOME"] = str(home)
    play = cli.playbook(
        f"""
        jobs:
          - name: j
            targets: {name}
            steps: [{{run: "echo ok"}}]
        """
    )
    proc = cli("run", play, "-i", str(inventory))
    assert proc.returncode == 0, proc.stdout + proc.stderr
