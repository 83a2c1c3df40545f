from coordinator.cli import coordinator_main

coordinator_main()
