"""The typed operation wrappers: PyMongo's parameters, and `comment=` naming the operation (to the server too)."""

from __future__ import annotations

import pytest

from exporter import OperationFailed
from exporter.core.operations import label
from tests.conftest import PoolFactory
from tests.support.commands import Commands


def test_label_is_the_comment_when_it_is_a_text() -> None:
    assert label("list_sessions", "find") == "list_sessions"
    assert label(None, "find") == "find" and label("", "find") == "find"
    assert label({"job": "x"}, "aggregate") == "aggregate"


async def test_comment_names_the_operation_in_errors(pool_factory: PoolFactory) -> None:
    pool = await pool_factory()
    await pool.insert_one({"active": True})  # PyMongo ignores dropping an index of a missing collection
    with pytest.raises(OperationFailed) as labelled:
        await pool.drop_index("no_such_index", comment="tidy_up")
    assert labelled.value.operation == "tidy_up" and labelled.value.message.startswith("tidy_up")
    with pytest.raises(OperationFailed) as plain:
        await pool.drop_index("no_such_index")
    assert plain.value.operation == "drop_index"


async def test_comment_reaches_the_server_and_labels_the_core_s_own_operations(pool_factory: PoolFactory) -> None:
    commands = Commands()
    pool = await pool_factory(event_listeners=[commands])
    await pool.add({"session": {"login": "a"}})
    await pool.find({"active": True}, {"session": 1}, 0, 1, comment="list_sessions")
    await pool.count_documents({}, comment="search_sessions")
    await pool.get_session()
    assert ("find", "list_sessions") in commands.sent
    assert ("aggregate", "search_sessions") in commands.sent  # count_documents is an aggregation
    assert ("insert", "add") in commands.sent
    assert ("findAndModify", "get_session") in commands.sent


async def test_positional_arguments_as_pymongo_takes_them(pool_factory: PoolFactory) -> None:
    pool = await pool_factory()
    for i in range(3):
        await pool.insert_one({"active": True, "i": i})
    docs = await pool.find({"active": True}, {"i": 1, "_id": 0}, 1, 1, sort=[("i", 1)])
    assert docs == [{"i": 1}]
    assert await pool.count_documents({"active": True}, None, None, skip=1, limit=1) == 1
    rows = await pool.aggregate([{"$match": {"i": {"$gte": 1}}}, {"$count": "n"}], hint={"_id": 1})
    assert rows == [{"n": 2}]
    result = await pool.update_many({"i": {"$lt": 2}}, {"$set": {"seen": True}}, False)
    assert result.modified_count == 2
    name = await pool.create_index([("i", 1)], name="by_i", unique=True)
    assert name == "by_i" and (await pool.index_information())["by_i"]["unique"] is True
