"""A program of your own: plain Python around prompthone modules. Every module's instruction (and demos)
is a prompt parameter the optimizer searches; the Python in `forward` stays as you wrote it."""

from prompthone.program import ChainOfThought, Predict, Program

TEAMS = ("billing", "technical", "account")


class Triage(Program):
    """Two LM calls: pull out the customer's problem in a few words, then route the ticket to a team."""

    def __init__(self) -> None:
        super().__init__()
        self.problem = Predict("ticket -> problem", instruction="State the customer's problem in a few words.")
        self.route = ChainOfThought(
            "ticket, problem -> team", instruction=f"Choose the team for this ticket: {', '.join(TEAMS)}."
        )

    def forward(self, ticket: str):
        problem = self.problem(ticket=ticket).problem
        return self.route(ticket=ticket, problem=problem)


def right_team(example, prediction) -> float:
    """Your metric: any function (example, prediction) -> a number in [0, 1] (or a bool)."""
    guess = (prediction.get("team") or "").strip().lower()
    return float(example.labels["team"] in guess.split())
