from email_sender.cli import main

main()
