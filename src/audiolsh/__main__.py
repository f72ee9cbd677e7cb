from audiolsh.cli import main

main()
