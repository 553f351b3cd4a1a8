"""Playbooks: Ansible's play/task syntax, run with provision's one-trip facts and recap."""
