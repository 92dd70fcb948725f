"""What is checked before a request runs, answered the way Shopify answers it.

- `_prepare`: parse and validate a document once (cached), with graphql-core's rules re-coded
  and four replaced so that errors come in graphql-ruby's (and so Shopify's) shape
  (``undefinedField``, ``argumentNotAccepted``, ``missingRequiredArguments``...);
- `_variable_errors`: variable values that do not fit their types (``INVALID_VARIABLE``, each
  problem worded as graphql-ruby words it);
- `_input_size_error`: any input list longer than 250 (``MAX_INPUT_SIZE_EXCEEDED``).

All of these answer at HTTP 200 and are not charged.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, cast

from graphql import (
    ArgumentNode,
    ASTValidationRule,
    DirectiveLocation,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInputType,
    InlineFragmentNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    ValidationRule,
    VariableDefinitionNode,
    is_input_object_type,
    is_list_type,
    is_non_null_type,
    is_required_argument,
    parse,
    specified_rules,
    type_from_ast,
    validate,
)

from daemon.sim.shopify.request import _ABSENT, _raw_value
from daemon.sim.shopify.schema import _SCHEMA

MAX_INPUT_SIZE: Final = 250


@functools.lru_cache(maxsize=256)
def _prepare(query: str) -> tuple[DocumentNode | None, tuple[dict[str, Any], ...]]:
    """Parse and validate a query once: a daemon sends the same few documents over and over."""
    try:
        document = parse(query)
    except GraphQLError as error:
        return None, (_formatted(error, code="PARSE_ERROR"),)
    errors = validate(_SCHEMA, document, _VALIDATION_RULES)
    if errors:
        return None, tuple(dict(error.formatted) for error in errors)
    return document, ()


def _formatted(error: GraphQLError, *, code: str) -> dict[str, Any]:
    formatted = dict(error.formatted)
    formatted["extensions"] = {"code": code}
    return formatted


# --------------------------------------------------------------------------------------------
# Validation in graphql-ruby's (and so Shopify's) error shape


def _ast_path(ancestors: Sequence[Any]) -> list[str]:
    """graphql-ruby's error path: the operation ("query Name"), then the enclosing fields."""
    path: list[str] = []
    for node in ancestors:
        if isinstance(node, OperationDefinitionNode):
            kind = node.operation.value
            path.append(f"{kind} {node.name.value}" if node.name else kind)
        elif isinstance(node, FragmentDefinitionNode):
            path.append(f"fragment {node.name.value}")
        elif isinstance(node, FieldNode):
            path.append(node.name.value)
    return path


class _UndefinedFieldRule(ValidationRule):
    """A field the type does not have: ``undefinedField``."""

    def enter_field(self, node: FieldNode, *args: Any) -> None:
        parent = self.context.get_parent_type()
        if parent is None or self.context.get_field_def() is not None:
            return
        name = node.name.value
        self.report_error(
            GraphQLError(
                f"Field '{name}' doesn't exist on type '{parent.name}'",
                node,
                path=[*_ast_path(args[3]), name],
                extensions={"code": "undefinedField", "typeName": parent.name, "fieldName": name},
            )
        )


class _ArgumentNotAcceptedRule(ValidationRule):
    """An argument the field or directive does not take: ``argumentNotAccepted``."""

    def enter_argument(self, node: ArgumentNode, *args: Any) -> None:
        if self.context.get_argument() is not None:
            return
        ancestors: Sequence[Any] = args[3]
        owner = next(
            (a for a in reversed(ancestors) if isinstance(a, FieldNode | DirectiveNode)), None
        )
        if owner is None:
            return
        if isinstance(owner, DirectiveNode):
            if self.context.get_directive() is None:
                return  # an unknown directive is reported on its own
            owner_name, type_name = owner.name.value, "Directive"
        else:
            if self.context.get_field_def() is None:
                return  # an unknown field is reported on its own
            owner_name, type_name = owner.name.value, "Field"
        argument = node.name.value
        self.report_error(
            GraphQLError(
                f"{type_name} '{owner_name}' doesn't accept argument '{argument}'",
                node,
                path=[*_ast_path(ancestors), argument],
                extensions={
                    "code": "argumentNotAccepted",
                    "name": owner_name,
                    "typeName": type_name,
                    "argumentName": argument,
                },
            )
        )


class _MissingRequiredArgumentsRule(ValidationRule):
    """A required argument left out: ``missingRequiredArguments``."""

    def enter_field(self, node: FieldNode, *args: Any) -> None:
        definition = self.context.get_field_def()
        if definition is not None:
            self._check(node, "Field", definition.args, args[3])

    def enter_directive(self, node: DirectiveNode, *args: Any) -> None:
        definition = self.context.get_directive()
        if definition is not None:
            self._check(node, "Directive", definition.args, args[3])

    def _check(
        self,
        node: FieldNode | DirectiveNode,
        kind: str,
        definitions: Mapping[str, Any],
        ancestors: Sequence[Any],
    ) -> None:
        given = {argument.name.value for argument in node.arguments or ()}
        missing = [
            n for n, arg in definitions.items() if is_required_argument(arg) and n not in given
        ]
        if not missing:
            return
        name = node.name.value
        path = (
            _ast_path([*ancestors, node]) if isinstance(node, FieldNode) else _ast_path(ancestors)
        )
        self.report_error(
            GraphQLError(
                f"{kind} '{name}' is missing required arguments: {', '.join(missing)}",
                node,
                path=path,
                extensions={
                    "code": "missingRequiredArguments",
                    "className": kind,
                    "name": name,
                    "arguments": ", ".join(missing),
                },
            )
        )


_DIRECTIVE_TARGETS: Final[dict[type, DirectiveLocation]] = {
    FieldNode: DirectiveLocation.FIELD,
    FragmentSpreadNode: DirectiveLocation.FRAGMENT_SPREAD,
    InlineFragmentNode: DirectiveLocation.INLINE_FRAGMENT,
    FragmentDefinitionNode: DirectiveLocation.FRAGMENT_DEFINITION,
    VariableDefinitionNode: DirectiveLocation.VARIABLE_DEFINITION,
}
_TARGET_WORDS: Final = {
    DirectiveLocation.QUERY: "queries",
    DirectiveLocation.MUTATION: "mutations",
    DirectiveLocation.SUBSCRIPTION: "subscriptions",
    DirectiveLocation.FIELD: "fields",
    DirectiveLocation.FRAGMENT_SPREAD: "fragment spreads",
    DirectiveLocation.INLINE_FRAGMENT: "inline fragments",
    DirectiveLocation.FRAGMENT_DEFINITION: "fragment definitions",
    DirectiveLocation.VARIABLE_DEFINITION: "variable definitions",
}


class _DirectiveRule(ValidationRule):
    """Unknown directives and directives in the wrong place, worded like Shopify."""

    def enter_directive(self, node: DirectiveNode, *args: Any) -> None:
        name = node.name.value
        definition = self.context.schema.get_directive(name)
        if definition is None:
            self.report_error(
                GraphQLError(
                    f"Directive @{name} is not defined",
                    node,
                    extensions={"code": "undefinedDirective", "directiveName": name},
                )
            )
            return
        applied_to = args[3][-1]
        if isinstance(applied_to, OperationDefinitionNode):
            location: DirectiveLocation | None = DirectiveLocation[applied_to.operation.name]
        else:
            location = _DIRECTIVE_TARGETS.get(type(applied_to))
        if location is None or location in definition.locations:
            return
        allowed = ", ".join(
            _TARGET_WORDS.get(loc, loc.value.lower()) for loc in definition.locations
        )
        target = _TARGET_WORDS.get(location, location.value.lower())
        self.report_error(
            GraphQLError(
                f"'@{name}' can't be applied to {target} (allowed: {allowed})",
                node,
                extensions={"code": "directiveCannotBeApplied", "targetName": target, "name": name},
            )
        )


# graphql-core's own rules for everything else, each tagged with graphql-ruby's code.
_RULE_CODES: Final = {
    "ExecutableDefinitionsRule": "definitionNotExecutable",
    "UniqueOperationNamesRule": "uniquelyNamedOperations",
    "LoneAnonymousOperationRule": "anonymousOperationWithOtherOperations",
    "KnownTypeNamesRule": "undefinedType",
    "FragmentsOnCompositeTypesRule": "fragmentOnNonCompositeType",
    "VariablesAreInputTypesRule": "variableRequiresValidType",
    "ScalarLeafsRule": "selectionMismatch",
    "UniqueFragmentNamesRule": "fragmentNamesNotUnique",
    "KnownFragmentNamesRule": "useAndDefineFragment",
    "NoUnusedFragmentsRule": "useAndDefineFragment",
    "PossibleFragmentSpreadsRule": "cannotSpreadFragment",
    "NoFragmentCyclesRule": "infiniteLoop",
    "UniqueVariableNamesRule": "variableNotUnique",
    "NoUndefinedVariablesRule": "variableNotDefined",
    "NoUnusedVariablesRule": "variableNotUsed",
    "UniqueDirectivesPerLocationRule": "directiveNotUniqueForLocation",
    "UniqueArgumentNamesRule": "argumentNotUnique",
    "ValuesOfCorrectTypeRule": "argumentLiteralsIncompatible",
    "VariablesInAllowedPositionRule": "variableMismatch",
    "OverlappingFieldsCanBeMergedRule": "fieldConflict",
    "UniqueInputFieldNamesRule": "inputFieldNotUnique",
}
_REPLACED_RULES: Final = {
    "FieldsOnCorrectTypeRule",
    "KnownArgumentNamesRule",
    "ProvidedRequiredArgumentsRule",
    "KnownDirectivesRule",
}


def _coded_rule(rule: type[ASTValidationRule]) -> type[ASTValidationRule]:
    code = _RULE_CODES.get(rule.__name__, "validationFailed")

    def report_error(self: ASTValidationRule, error: GraphQLError) -> None:
        self.context.report_error(
            GraphQLError(error.message, error.nodes, extensions={"code": code})
        )

    return cast(
        type[ASTValidationRule],
        type(f"Coded{rule.__name__}", (rule,), {"report_error": report_error}),
    )


_VALIDATION_RULES: Final[tuple[type[ASTValidationRule], ...]] = (
    _UndefinedFieldRule,
    _ArgumentNotAcceptedRule,
    _MissingRequiredArgumentsRule,
    _DirectiveRule,
    *(_coded_rule(rule) for rule in specified_rules if rule.__name__ not in _REPLACED_RULES),
)


# --------------------------------------------------------------------------------------------
# Variables


def _input_problems(value: Any, type_: GraphQLInputType, path: list[str | int]) -> list[Any]:
    """Why a variable value does not fit its type, as graphql-ruby words each problem."""
    if is_non_null_type(type_):
        if value is None or value is _ABSENT:
            return [(path, "Expected value to not be null")]
        return _input_problems(value, cast(Any, type_).of_type, path)
    if value is None or value is _ABSENT:
        return []
    if is_list_type(type_):
        item_type = cast(Any, type_).of_type
        if not isinstance(value, list):
            return _input_problems(value, item_type, path)
        return [p for i, v in enumerate(value) for p in _input_problems(v, item_type, [*path, i])]
    if is_input_object_type(type_):
        if not isinstance(value, dict):
            return [(path, f"Expected value to be an object for {type_.name}")]
        problems: list[Any] = [
            ([*path, name], f"Field is not defined on {type_.name}")
            for name in value
            if name not in type_.fields
        ]
        for name, input_field in type_.fields.items():
            sub_value = value.get(name, _ABSENT)
            if sub_value is _ABSENT and _has_default(input_field):
                continue
            problems.extend(_input_problems(sub_value, input_field.type, [*path, name]))
        return problems
    named = cast(Any, type_)
    try:
        named.parse_value(value)
    except (GraphQLError, TypeError, ValueError):
        return [(path, f"Could not coerce value {json.dumps(value)} to {named.name}")]
    return []


def _has_default(input_field: Any) -> bool:
    # graphql-core 3.3 keeps SDL defaults in `default`; 3.2 in `default_value`.
    return (
        input_field.default_value is not Undefined
        or getattr(input_field, "default", None) is not None
    )


def _variable_errors(
    operation: OperationDefinitionNode, provided: Mapping[str, Any]
) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        type_ = type_from_ast(_SCHEMA, definition.type)
        value = provided.get(name, _ABSENT)
        if type_ is None or (value is _ABSENT and definition.default_value is not None):
            continue
        problems = _input_problems(value, cast(GraphQLInputType, type_), [])
        if not problems:
            continue
        message = f"Variable ${name} of type {type_} was provided invalid value"
        if all(path for path, _ in problems):
            details = ", ".join(f"{'.'.join(map(str, p))} ({why})" for p, why in problems)
            message += f" for {details}"
        errors.append(
            {
                "message": message,
                "locations": _locations(definition),
                "extensions": {
                    "code": "INVALID_VARIABLE",
                    "value": None if value is _ABSENT else value,
                    "problems": [{"path": p, "explanation": why} for p, why in problems],
                },
            }
        )
    return errors


# --------------------------------------------------------------------------------------------
# Input size


def _field_selections(
    selection_set: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    path: list[str],
) -> Iterator[tuple[FieldNode, list[str]]]:
    """Every field selected anywhere in the document, with its path of field names."""
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            field_path = [*path, selection.name.value]
            yield selection, field_path
            if selection.selection_set is not None:
                yield from _field_selections(selection.selection_set, fragments, field_path)
        elif isinstance(selection, InlineFragmentNode):
            yield from _field_selections(selection.selection_set, fragments, path)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:  # validation has ruled out cycles
                yield from _field_selections(fragment.selection_set, fragments, path)


def _oversized_list(value: Any, path: list[str]) -> tuple[list[str], int] | None:
    if isinstance(value, list):
        return (path, len(value)) if len(value) > MAX_INPUT_SIZE else None
    if isinstance(value, dict):
        for key, sub_value in value.items():
            found = _oversized_list(sub_value, [*path, key])
            if found is not None:
                return found
    return None


def _input_size_error(
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> dict[str, Any] | None:
    """Shopify refuses any input list longer than 250 before running the request."""
    for node, path in _field_selections(operation.selection_set, fragments, []):
        for argument in node.arguments or ():
            value = _raw_value(argument.value, variables)
            found = _oversized_list(value, [*path, argument.name.value])
            if found is not None:
                return {
                    "message": f"The input array size of {found[1]} is greater than the maximum "
                    f"allowed of {MAX_INPUT_SIZE}.",
                    "locations": _locations(node),
                    "path": found[0],
                    "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"},
                }
    return None


def _locations(node: Node) -> list[dict[str, int]]:
    if node.loc is None:
        return []
    location = node.loc.source.get_location(node.loc.start)
    return [{"line": location.line, "column": location.column}]
