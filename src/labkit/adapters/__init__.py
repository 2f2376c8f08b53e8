"""Adapters: providers, probes, storage and Ansible, the parts that touch the outside."""
