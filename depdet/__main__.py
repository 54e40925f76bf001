from depdet.cli import main

main()
