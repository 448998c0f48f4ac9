from vidnas.cli import main

main()
