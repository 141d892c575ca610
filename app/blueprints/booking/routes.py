"""Service booking (预约服务): the catalogue, slots, residents' bookings and the provider side."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.blueprints.booking.schemas import (
    BookablePeopleSchema,
    BookableServiceDetailSchema,
    BookableServiceListSchema,
    BookingCancelSchema,
    BookingCreateSchema,
    BookingDetailSchema,
    BookingPageSchema,
    BookingRescheduleSchema,
    BookingSlotAdjustSchema,
    BookingSlotArgsSchema,
    BookingSlotListSchema,
    BookingTransitionSchema,
    CreatedServiceExceptionSchema,
    MyBookingsArgsSchema,
    ServiceExceptionCreateSchema,
    ServiceExceptionListSchema,
    StaffBookableServiceListSchema,
    StaffBookingArgsSchema,
    StaffBookingDetailSchema,
    StaffBookingPageSchema,
    StaffBookingSlotSchema,
    UrgentVisitSchema,
)
from app.blueprints.me.routes import ANY_SIGNED_IN
from app.idempotency import idempotent
from app.security import RESIDENT, current_user_id, role_required, staff_orgs
from app.services import (
    booking,
    booking_catalogue,  # noqa: F401 - registers the demo seed step
    booking_staff,
)

blp = Blueprint("booking", __name__, url_prefix="/api/v1",
                description="Service booking (预约服务): catalogue, slots, bookings, staff side")
STAFF_ENDPOINT_ROLES = ("staff", "manager", "admin", "grid_worker")


def caller_scope() -> booking_staff.StaffScope:
    """What the calling staff member works, from the org roles in their token."""
    return booking_staff.StaffScope(user_id=current_user_id(),
                                    orgs=staff_orgs(roles=STAFF_ENDPOINT_ROLES))


@blp.route("/services")
class Services(MethodView):
    @role_required(*ANY_SIGNED_IN)
    @blp.response(200, BookableServiceListSchema)
    def get(self):
        """The bookable services of my community."""
        return {"items": booking.list_services(user_id=current_user_id()), "next_cursor": None}


@blp.route("/services/<int:service_id>")
class ServiceDetail(MethodView):
    @role_required(*ANY_SIGNED_IN)
    @blp.response(200, BookableServiceDetailSchema)
    def get(self, service_id):
        """A service with its rules, weekly hours and coming exceptions."""
        return booking.get_service(user_id=current_user_id(), service_id=service_id)


@blp.route("/services/<int:service_id>/slots")
class ServiceSlots(MethodView):
    @role_required(*ANY_SIGNED_IN)
    @blp.arguments(BookingSlotArgsSchema, location="query")
    @blp.response(200, BookingSlotListSchema)
    def get(self, args, service_id):
        """Bookable slots between two dates (at most 31 days) with the places left."""
        service, items = booking.list_slots(user_id=current_user_id(), service_id=service_id,
                                            **args)
        return {"service_id": service.id, "items": items, "next_cursor": None}


@blp.route("/bookings")
class Bookings(MethodView):
    @role_required(RESIDENT)
    @idempotent()
    @blp.arguments(BookingCreateSchema)
    @blp.response(201, BookingDetailSchema)
    def post(self, body):
        """Book a slot: 201 confirmed (or pending), 409 slot_full or already_booked, 422 a rule."""
        return booking.create_booking(user_id=current_user_id(), **body)


@blp.route("/bookings/mine")
class MyBookings(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(MyBookingsArgsSchema, location="query")
    @blp.response(200, BookingPageSchema)
    def get(self, args):
        """Bookings by me or for me: upcoming ones first (soonest first), then past ones."""
        items, cursor = booking.my_bookings(user_id=current_user_id(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/bookings/people")
class BookablePeople(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, BookablePeopleSchema)
    def get(self):
        """Who I may book for (`for_member_id`): me and my households' approved members."""
        return {"items": booking.household_people(user_id=current_user_id()),
                "next_cursor": None}


@blp.route("/bookings/urgent-visit")
class UrgentVisit(MethodView):
    @role_required(RESIDENT)
    @idempotent()
    @blp.arguments(UrgentVisitSchema)
    @blp.response(201, BookingDetailSchema)
    def post(self, body):
        """One tap: someone comes to my door (一键联系社区上门)."""
        return booking.request_urgent_visit(user_id=current_user_id(), **body)


@blp.route("/bookings/<int:booking_id>")
class BookingDetail(MethodView):
    @role_required(RESIDENT)
    @blp.response(200, BookingDetailSchema)
    def get(self, booking_id):
        """My booking with its timeline."""
        return booking.get_booking(booking_id=booking_id, user_id=current_user_id())


@blp.route("/bookings/<int:booking_id>/cancel")
class CancelBooking(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(BookingCancelSchema)
    @blp.response(200, BookingDetailSchema)
    def post(self, body, booking_id):
        """Cancel until the cancellation deadline; the place is free at once."""
        return booking.cancel_booking(booking_id=booking_id, user_id=current_user_id(), **body)


@blp.route("/bookings/<int:booking_id>/reschedule")
class RescheduleBooking(MethodView):
    @role_required(RESIDENT)
    @blp.arguments(BookingRescheduleSchema)
    @blp.response(200, BookingDetailSchema)
    def post(self, body, booking_id):
        """Move to another slot: the new place taken and the old freed together, or nothing."""
        return booking.reschedule_booking(booking_id=booking_id, user_id=current_user_id(),
                                          **body)


# --- staff ------------------------------------------------------------------------------------


@blp.route("/staff/bookings")
class StaffBookings(MethodView):
    @role_required(*STAFF_ENDPOINT_ROLES)
    @blp.arguments(StaffBookingArgsSchema, location="query")
    @blp.response(200, StaffBookingPageSchema)
    def get(self, args):
        """The provider's day in time order (open urgent visits included)."""
        items, cursor = booking_staff.staff_day(scope=caller_scope(), **args)
        return {"items": items, "next_cursor": cursor}


@blp.route("/staff/bookings/<int:booking_id>")
class StaffBookingDetail(MethodView):
    @role_required(*STAFF_ENDPOINT_ROLES)
    @blp.response(200, StaffBookingDetailSchema)
    def get(self, booking_id):
        """A booking of my org's services with its timeline."""
        return booking_staff.staff_booking(scope=caller_scope(), booking_id=booking_id)


@blp.route("/staff/bookings/<int:booking_id>/transitions")
class StaffBookingTransitions(MethodView):
    @role_required(*STAFF_ENDPOINT_ROLES)
    @blp.arguments(BookingTransitionSchema)
    @blp.response(200, StaffBookingDetailSchema)
    def post(self, body, booking_id):
        """confirm, reject (with a reason), check_in, complete or no_show."""
        return booking_staff.staff_transition(scope=caller_scope(), booking_id=booking_id,
                                              **body)


@blp.route("/staff/services")
class StaffServices(MethodView):
    @role_required(*STAFF_ENDPOINT_ROLES)
    @blp.response(200, StaffBookableServiceListSchema)
    def get(self):
        """The services my orgs provide."""
        return {"items": booking_staff.staff_services(scope=caller_scope()),
                "next_cursor": None}


@blp.route("/staff/services/<int:service_id>/exceptions")
class ServiceExceptions(MethodView):
    @role_required(*STAFF_ENDPOINT_ROLES)
    @blp.response(200, ServiceExceptionListSchema)
    def get(self, service_id):
        """The service's exceptions from today on."""
        items = booking_staff.list_exceptions(scope=caller_scope(), service_id=service_id)
        return {"items": items, "next_cursor": None}

    @role_required(*STAFF_ENDPOINT_ROLES)
    @blp.arguments(ServiceExceptionCreateSchema)
    @blp.response(201, CreatedServiceExceptionSchema)
    def post(self, body, service_id):
        """Close a day (or part of it), or add extra opening hours on a date."""
        return booking_staff.add_exception(scope=caller_scope(), service_id=service_id,
                                           **body)


@blp.route("/staff/services/<int:service_id>/exceptions/<int:exception_id>")
class ServiceExceptionDetail(MethodView):
    @role_required(*STAFF_ENDPOINT_ROLES)
    @blp.response(204)
    def delete(self, service_id, exception_id):
        """Remove an exception."""
        booking_staff.delete_exception(scope=caller_scope(), service_id=service_id,
                                       exception_id=exception_id)


@blp.route("/staff/services/<int:service_id>/slots")
class StaffSlots(MethodView):
    @role_required(*STAFF_ENDPOINT_ROLES)
    @blp.arguments(BookingSlotAdjustSchema)
    @blp.response(200, StaffBookingSlotSchema)
    def post(self, body, service_id):
        """Block/unblock one slot or set its capacity (not below the places booked)."""
        return booking_staff.adjust_slot(scope=caller_scope(), service_id=service_id, **body)
