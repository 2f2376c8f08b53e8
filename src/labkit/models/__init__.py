"""Typed models at labkit's edges: labs, topologies, instances, evidence, results, criteria."""
