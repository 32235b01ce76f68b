"""An operation that applies one app's CreateModel/AddField operations as one step.

Django keeps its migration state rendered between operations, and every CreateModel
or relational AddField re-renders the new model with every model related to it. All
of dj-stripe's models point at its Account, so its 74 operations cost about 2,900
model renders (most of a fresh migrate's time). Here the operations only record the
models in the state, which is rendered once afterwards, and the tables are created
from that final state with the schema editor's own create_model: the same tables,
columns, indexes and constraints (a table's columns may come in another order).
"""

from __future__ import annotations

from django.db.migrations.operations.base import Operation


class CreateModelsAtOnce(Operation):
    reversible = True

    def __init__(self, operations: list[Operation]) -> None:
        self.operations = operations
        super().__init__()

    def deconstruct(self):
        return self.__class__.__qualname__, [self.operations], {}

    def describe(self) -> str:
        return f"Create {len(self.operations)} model operations at once"

    def state_forwards(self, app_label, state) -> None:
        # Without rendered apps, add_model/add_field only record the change; the next
        # use of state.apps renders every model once.
        state.__dict__.pop("apps", None)
        for operation in self.operations:
            operation.state_forwards(app_label, state)

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        for model in to_state.apps.get_app_config(app_label).get_models():
            if self.allow_migrate_model(schema_editor.connection.alias, model):
                schema_editor.create_model(model)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        for model in reversed(list(from_state.apps.get_app_config(app_label).get_models())):
            if self.allow_migrate_model(schema_editor.connection.alias, model):
                schema_editor.delete_model(model)
