"""``dramatiq`` as the task program runs it, with optional steps in its main process before it
forks the worker process (used by bench/memory.py):

    python bench/dramatiq_main.py [--bench-preload] [--bench-freeze] coinex_chatbot.tasks ...

``--bench-preload`` imports the app's task module and builds the knowledge base in the main
process (``dramatiq`` itself imports them only in the worker process, after the fork), so the
worker inherits them; ``--bench-freeze`` calls ``gc.freeze()`` right before the fork.
"""

import gc
import sys

from dramatiq.__main__ import main

FLAGS = ("--bench-preload", "--bench-freeze")

if __name__ == "__main__":
    flags = set()
    while len(sys.argv) > 1 and sys.argv[1] in FLAGS:
        flags.add(sys.argv.pop(1))
    if "--bench-preload" in flags:
        import coinex_chatbot.tasks  # noqa: F401  (the broker and the actor, as the worker does)
        from coinex_chatbot.knowledge import get_knowledge_base

        get_knowledge_base()
    if "--bench-freeze" in flags:
        gc.freeze()
    sys.exit(main())
