from envserver.cli import main

main()
