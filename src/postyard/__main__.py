from postyard.cli.main import main

main()
