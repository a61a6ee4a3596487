from authtrace.cli import main

main()
