"""The wheel canteen (云享车轮食堂): dishes, daily menus with portions, orders, their events,
subsidy rules by age band and the couriers' positions."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.accounts import User
from app.models.base import Base, str_enum, utcnow
from app.models.community import Household
from app.models.uploads import Upload


class Meal(enum.StrEnum):
    BREAKFAST = "breakfast"
    LUNCH = "lunch"
    DINNER = "dinner"


class Fulfilment(enum.StrEnum):
    DINE_IN = "dine_in"
    PICKUP = "pickup"
    DELIVERY = "delivery"


class OrderChannel(enum.StrEnum):
    ONLINE = "online"
    COUNTER = "counter"


class OrderStatus(enum.StrEnum):
    PLACED = "placed"
    ACCEPTED = "accepted"
    PREPARING = "preparing"
    READY = "ready"
    PICKED_UP = "picked_up"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery_failed"
    CANCELLED = "cancelled"


class Dish(Base):
    """A dish the canteen cooks: price in fen, portion size, nutrition tags, allergens."""

    __tablename__ = "canteen_dishes"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        CheckConstraint("price_fen >= 0", name="price_not_negative"),
        CheckConstraint("calories IS NULL OR calories >= 0", name="calories_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    description: Mapped[str] = mapped_column(String(300), default="")
    photo_upload_id: Mapped[int | None] = mapped_column(ForeignKey("uploads.id"))
    price_fen: Mapped[int] = mapped_column(Integer)
    portion_size: Mapped[str] = mapped_column(String(40), default="",
                                              doc="as the menu shows it, e.g. 约350克")
    tags: Mapped[list] = mapped_column(JSON, default=list)
    allergens: Mapped[list] = mapped_column(JSON, default=list)
    calories: Mapped[int | None] = mapped_column(Integer, doc="kcal per portion")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    photo: Mapped[Upload | None] = relationship(lazy="raise")


class SubsidyRule(Base):
    """A subsidised price for diners of at least `min_age` (the highest matching band wins)."""

    __tablename__ = "canteen_subsidy_rules"
    __table_args__ = (
        UniqueConstraint("community_id", "min_age"),
        CheckConstraint("min_age >= 0", name="min_age_not_negative"),
        CheckConstraint("percent_off BETWEEN 0 AND 100", name="percent_off_range"),
        CheckConstraint("amount_off_fen >= 0", name="amount_off_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    min_age: Mapped[int] = mapped_column(Integer)
    percent_off: Mapped[int] = mapped_column(Integer, default=0)
    amount_off_fen: Mapped[int] = mapped_column(Integer, default=0, doc="per portion")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Menu(Base):
    """One meal's menu on one day: its order cut-off and delivery window."""

    __tablename__ = "canteen_menus"
    __table_args__ = (
        UniqueConstraint("org_id", "date", "meal"),
        Index("ix_canteen_menus_community_date", "community_id", "date"),
        CheckConstraint("delivery_end > delivery_start", name="delivery_window_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"), index=True)
    date: Mapped[date] = mapped_column(Date, doc="the day in the community's time zone")
    meal: Mapped[Meal] = mapped_column(str_enum(Meal, "canteen_meal"))
    cutoff_at: Mapped[datetime]
    delivery_start: Mapped[datetime]
    delivery_end: Mapped[datetime]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    items: Mapped[list[MenuItem]] = relationship(
        back_populates="menu", lazy="raise", order_by="MenuItem.id",
        cascade="all, delete-orphan")


class MenuItem(Base):
    """A dish on a menu with its portions; portions_left is only ever changed by conditional
    UPDATEs, and the CHECK constraint is the backstop against overselling."""

    __tablename__ = "canteen_menu_items"
    __table_args__ = (
        UniqueConstraint("menu_id", "dish_id"),
        CheckConstraint("portions_left >= 0", name="portions_left_not_negative"),
        CheckConstraint("portions_left <= portions_total", name="portions_left_within_total"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    menu_id: Mapped[int] = mapped_column(ForeignKey("canteen_menus.id", ondelete="CASCADE"),
                                         index=True)
    dish_id: Mapped[int] = mapped_column(ForeignKey("canteen_dishes.id"), index=True)
    portions_total: Mapped[int] = mapped_column(Integer)
    portions_left: Mapped[int] = mapped_column(Integer)
    sold_out_at: Mapped[datetime | None]

    menu: Mapped[Menu] = relationship(back_populates="items", lazy="raise")
    dish: Mapped[Dish] = relationship(lazy="raise")


class Order(Base):
    """A meal ordered online by a resident (for themselves or a household elder) or at the
    counter; `status` follows ORDER_ALLOWED and every move is an OrderEvent."""

    __tablename__ = "canteen_orders"
    __table_args__ = (
        UniqueConstraint("menu_id", "pickup_code"),
        Index("ix_canteen_orders_placed_by", "placed_by_id", "created_at", "id"),
        Index("ix_canteen_orders_diner", "diner_id", "created_at", "id"),
        Index("ix_canteen_orders_org_date", "org_id", "menu_date", "meal"),
        CheckConstraint("total_fen >= 0 AND standard_total_fen >= total_fen",
                        name="total_within_standard"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"))
    menu_id: Mapped[int] = mapped_column(ForeignKey("canteen_menus.id"), index=True)
    menu_date: Mapped[date] = mapped_column(Date)
    meal: Mapped[Meal] = mapped_column(str_enum(Meal, "canteen_meal"))
    channel: Mapped[OrderChannel] = mapped_column(str_enum(OrderChannel, "canteen_channel"))
    fulfilment: Mapped[Fulfilment] = mapped_column(str_enum(Fulfilment, "canteen_fulfilment"))
    status: Mapped[OrderStatus] = mapped_column(
        str_enum(OrderStatus, "canteen_order_status"), default=OrderStatus.PLACED)
    placed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    diner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    diner_name: Mapped[str] = mapped_column(String(64), default="")
    diner_age: Mapped[int | None] = mapped_column(Integer)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"))
    address: Mapped[str] = mapped_column(String(120), default="")
    note: Mapped[str] = mapped_column(String(200), default="")
    pickup_code: Mapped[str | None] = mapped_column(String(8))
    standard_total_fen: Mapped[int] = mapped_column(Integer)
    total_fen: Mapped[int] = mapped_column(Integer)
    subsidy_rule_id: Mapped[int | None] = mapped_column(ForeignKey("canteen_subsidy_rules.id"))
    courier_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    courier_lat: Mapped[float | None] = mapped_column(Float)
    courier_lng: Mapped[float | None] = mapped_column(Float)
    courier_accuracy: Mapped[float | None] = mapped_column(Float)
    courier_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    accepted_at: Mapped[datetime | None]
    ready_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    menu: Mapped[Menu] = relationship(lazy="raise")
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", lazy="raise", order_by="OrderItem.id",
        cascade="all, delete-orphan")
    events: Mapped[list[OrderEvent]] = relationship(
        back_populates="order", lazy="raise", order_by="OrderEvent.id")
    household: Mapped[Household | None] = relationship(lazy="raise")
    diner: Mapped[User | None] = relationship(lazy="raise", foreign_keys=[diner_id])
    subsidy_rule: Mapped[SubsidyRule | None] = relationship(lazy="raise")


class OrderItem(Base):
    """One dish of an order: quantity and the prices charged (standard and actual)."""

    __tablename__ = "canteen_order_items"
    __table_args__ = (
        UniqueConstraint("order_id", "dish_id"),
        CheckConstraint("qty > 0", name="qty_positive"),
        CheckConstraint("unit_price_fen >= 0 AND standard_price_fen >= unit_price_fen",
                        name="price_within_standard"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("canteen_orders.id", ondelete="CASCADE"),
                                          index=True)
    menu_item_id: Mapped[int] = mapped_column(ForeignKey("canteen_menu_items.id"), index=True)
    dish_id: Mapped[int] = mapped_column(ForeignKey("canteen_dishes.id"), index=True)
    dish_name: Mapped[str] = mapped_column(String(60))
    qty: Mapped[int] = mapped_column(Integer)
    standard_price_fen: Mapped[int] = mapped_column(Integer)
    unit_price_fen: Mapped[int] = mapped_column(Integer)

    order: Mapped[Order] = relationship(back_populates="items", lazy="raise")


class OrderEvent(Base):
    """An order's timeline row and the kitchen feed's entry, written with the change.

    `txid` is the writing transaction's id on PostgreSQL (0 on SQLite); the feed is read in
    (txid, id) order and only below the oldest in-flight transaction, so an event that
    commits late is never skipped (see app/services/canteen_feed.py).
    """

    __tablename__ = "canteen_order_events"
    __table_args__ = (
        Index("ix_canteen_order_events_feed", "org_id", "txid", "id"),
        Index("ix_canteen_order_events_order", "order_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger, default=0)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"))
    order_id: Mapped[int] = mapped_column(ForeignKey("canteen_orders.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(30))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(String(200), default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    order: Mapped[Order] = relationship(back_populates="events", lazy="raise")


class CourierPosition(Base):
    """A courier's reported position on a delivery; purged after the day."""

    __tablename__ = "canteen_courier_positions"
    __table_args__ = (
        CheckConstraint("lat BETWEEN -90 AND 90 AND lng BETWEEN -180 AND 180",
                        name="position_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("canteen_orders.id", ondelete="CASCADE"),
                                          index=True)
    courier_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    lat: Mapped[float] = mapped_column(Float)
    lng: Mapped[float] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
