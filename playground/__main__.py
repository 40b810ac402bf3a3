from playground.cli.main import main

main()
