"""The netns provider: every node a network namespace with its own mount and UTS namespaces."""
